"""The Nipype sink: store a file under its BIDS-derivative name, with a JSON sidecar."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    DynamicTraitedSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from nipype.interfaces.io import add_traits

from workflows._docs import fill_doc
from workflows.bids.atomic import atomic_copy, atomic_save_nifti
from workflows.bids.naming import ENTITIES, build_derivative_path, source_entities
from workflows.bids.provenance import make_sidecar, source_uri, write_sidecar
from workflows.execution.engine import Workflow
from workflows.interfaces.base import given

__all__ = ["DerivativesDataSink", "init_sinks_wf", "sink_factory", "write_derivative"]

#: What a sinks workflow writes: ``{file field: (sidecar field or None, entities)}``.
SinkSpecs = Mapping[str, tuple[str | None, Mapping[str, Any]]]

class _DerivativesDataSinkInputSpec(DynamicTraitedSpec, BaseInterfaceInputSpec):
    base_directory = traits.Directory(mandatory=True, desc="msica output directory")
    in_file = File(exists=True, mandatory=True, desc="file to store")
    source_file = traits.Str(desc="input file whose entities the output inherits")
    meta_dict = traits.Dict(traits.Str, desc="sidecar content (parameters)")
    dataset_links = traits.Dict(
        traits.Str, desc="dataset name -> root, to express Sources as BIDS URIs"
    )
    sources = traits.List(traits.Str, desc="further source paths or URIs for the sidecar")


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="written derivative")
    out_meta = File(exists=True, desc="its JSON sidecar")


class DerivativesDataSink(SimpleInterface):
    """Store a file under its BIDS-derivative name, with a JSON sidecar.

    Entities are taken from ``source_file`` (see ``SOURCE_ENTITIES``) and
    overridden by the entity inputs (``desc``, ``suffix``, ``scale``,
    ``atlas``, ``space``, ``extension``...; any name in :data:`ENTITIES`).
    The extension defaults to that of ``in_file``. The file is copied (or,
    for a ``.nii`` -> ``.nii.gz`` change, re-saved by nibabel) atomically.

    The sidecar holds ``meta_dict``, ``SoftwareName``/``SoftwareVersion`` and
    ``Sources``: the ``source_file`` and ``sources`` as BIDS URIs.

    Examples
    --------
    >>> ds = DerivativesDataSink(desc="ica", suffix="components", scale=10)
    >>> ds.inputs.scale
    10
    """

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec
    # Always rerun: a cached sink would not rewrite a derivative deleted since the last run.
    _always_run = True

    def __init__(self, **inputs: Any) -> None:
        static = set(self.input_spec().copyable_trait_names())
        unknown = sorted(set(inputs) - static - set(ENTITIES))
        if unknown:
            raise ValueError(
                f"DerivativesDataSink got unknown inputs {unknown}; entity inputs must be "
                f"among {list(ENTITIES)} (put parameters in meta_dict)."
            )
        entity_inputs = {k: inputs.pop(k) for k in list(inputs) if k in ENTITIES}
        super().__init__(**inputs)
        add_traits(self.inputs, list(ENTITIES))
        for key, value in entity_inputs.items():
            setattr(self.inputs, key, value)

    def _run_interface(self, runtime):
        inputs = self.inputs
        entities = {key: value for key in ENTITIES
                    if (value := given(getattr(inputs, key))) is not None}
        out_file, out_meta = write_derivative(
            inputs.in_file, inputs.base_directory, entities,
            source_file=given(inputs.source_file), sources=given(inputs.sources) or (),
            meta=given(inputs.meta_dict), dataset_links=given(inputs.dataset_links))
        self._results["out_file"] = str(out_file)
        self._results["out_meta"] = str(out_meta)
        return runtime


def write_derivative(
    in_file: str | Path,
    base_directory: str | Path,
    entities: Mapping[str, Any],
    *,
    source_file: str | None = None,
    sources: Sequence[str] = (),
    meta: Mapping[str, Any] | None = None,
    dataset_links: Mapping[str, str] | None = None,
) -> tuple[Path, Path]:
    """Store ``in_file`` under its BIDS-derivative name, with its JSON sidecar.

    The work of :class:`DerivativesDataSink`, for interfaces that write many
    derivatives in one node.

    Parameters
    ----------
    in_file : str or Path
        File to store.
    base_directory : str or Path
        msica output directory.
    entities : mapping
        Entities overriding those of ``source_file`` (any name in :data:`ENTITIES`); the
        extension defaults to that of ``in_file``.
    source_file : str, optional
        Input file whose entities the output inherits; the first of the ``Sources``.
    sources : sequence of str
        Further source paths or URIs for the sidecar.
    meta : mapping, optional
        Sidecar content (parameters).
    dataset_links : mapping, optional
        Dataset name -> root, to express ``Sources`` as BIDS URIs.

    Returns
    -------
    out_file, out_meta : Path
        The derivative and its sidecar.
    """
    in_file = Path(in_file)
    named: dict[str, Any] = dict(source_entities(source_file)) if source_file is not None else {}
    named.update(entities)
    if "extension" not in named:
        named["extension"] = "".join(in_file.suffixes[-2:] if in_file.name.endswith(".gz")
                                     else in_file.suffixes[-1:])
    base = Path(base_directory)
    out_file = base / build_derivative_path(named)
    out_meta = base / build_derivative_path({**named, "extension": ".json"})

    nifti_exts = (".nii", ".nii.gz")
    src_ext = ".nii.gz" if in_file.name.endswith(".nii.gz") else in_file.suffix
    if src_ext in nifti_exts and named["extension"] in nifti_exts and src_ext != named[
        "extension"
    ]:
        atomic_save_nifti(in_file, out_file)
    else:
        atomic_copy(in_file, out_file)

    links = dict(dataset_links or {})
    paths = ([source_file] if source_file is not None else []) + list(sources)
    uris = [s if s.startswith(("bids:", "file:")) else source_uri(s, links, base)
            for s in paths]
    write_sidecar(out_meta, make_sidecar(dict(meta or {}), sources=uris))
    return out_file, out_meta


def sink_factory(output_dir, *, source_file: str | None = None,
                 dataset_links: Mapping[str, str] | None = None):
    """Return ``sink(name, sources=None, **entities) -> Node`` making DerivativesDataSink nodes.

    Every sink of a workflow shares the output root, the source file whose
    entities outputs inherit (none at the group level) and the dataset links
    for the ``Sources`` URIs; sinks run in the scheduler's process.
    """
    from nipype.pipeline import engine as pe

    def sink(name: str, sources: list[str] | None = None, **entities: Any):
        interface = DerivativesDataSink(base_directory=str(output_dir), **entities)
        if source_file is not None:
            interface.inputs.source_file = source_file
        if sources:
            interface.inputs.sources = list(sources)
        if dataset_links:
            interface.inputs.dataset_links = dict(dataset_links)
        return pe.Node(interface, name=name, run_without_submitting=True)

    return sink


@fill_doc
def init_sinks_wf(
    *,
    output_dir: Path,
    outputs: SinkSpecs,
    source_file: str | None = None,
    sources: list[str] | None = None,
    dataset_links: Mapping[str, str] | None = None,
    name: str,
) -> Workflow:
    """Build a workflow that stores files under their BIDS-derivative names, with sidecars.

    One :class:`DerivativesDataSink` per file field (made by :func:`sink_factory`,
    named ``ds_<field>``); the outputs modules of the levels
    (:mod:`workflows.participant.outputs`, :mod:`workflows.group.outputs`) say what
    is written.

    Parameters
    ----------
    %(output_dir)s
    outputs : mapping
        ``{file field: (sidecar field or None, entities)}``: the inputnode field of a
        file, the inputnode field of its sidecar content (None: parameters-free
        sidecar) and the entities of its name.
    source_file : str, optional
        Input whose entities the outputs inherit (none at the group level).
    sources : list of str, optional
        Further sources listed in the sidecars.
    dataset_links : mapping, optional
        Input dataset names and roots, for the ``Sources`` URIs of sidecars.
    %(wf_name)s

    Inputs
    ------
    <file field>
        A file to store, for each key of ``outputs``.
    <sidecar field>
        Sidecar content (dict), for each sidecar field named in ``outputs``.

    Outputs
    -------
    <file field>
        Where the file was written, for each key of ``outputs``.
    """
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    workflow = Workflow(name=name)
    metas = sorted({meta for meta, _ in outputs.values() if meta is not None})
    inputnode = pe.Node(niu.IdentityInterface(fields=[*outputs, *metas]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=list(outputs)), name="outputnode")
    sink = sink_factory(output_dir, source_file=source_file, dataset_links=dataset_links)
    for field, (meta, entities) in outputs.items():
        node = sink(f"ds_{field}", sources, **entities)
        fields = [(field, "in_file")] + ([(meta, "meta_dict")] if meta is not None else [])
        workflow.connect([
            (inputnode, node, fields),
            (node, outputnode, [("out_file", field)]),
        ])  # fmt:skip
    return workflow
