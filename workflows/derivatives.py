"""Derivative naming and writing: the one place that builds msica output names.

Every output file goes through :func:`build_derivative_path` (pybids
``build_path`` with the patterns of ``bids_templates/msica_bids_config.json``),
is written with :func:`atomic_write`, and gets a JSON sidecar from
:func:`make_sidecar`. :class:`DerivativesDataSink` wraps all three for Nipype.

Names follow ``sub-<l>[_ses-<l>][_task-<l>][_acq-<l>]...[_run-<i>][_echo-<i>]
[_space-<l>][_res-<l>][_den-<l>][_atlas-<l>][_scale-<order>][_stat-<l>]_desc-<l>_<suffix><ext>``
under ``sub-<l>/[ses-<l>/]func/``, and ``group/[task-<l>_]...desc-<l>_<suffix><ext>``
for group-level files (pass no ``subject``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from bids.layout import parse_file_entities
from bids.layout.models import Config
from bids.layout.writing import build_path
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    DynamicTraitedSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from nipype.interfaces.io import add_traits

from bids_templates import template_path
from pipeline import __version__

__all__ = [
    "ENTITIES",
    "DerivativesDataSink",
    "atomic_path",
    "atomic_write",
    "build_derivative_path",
    "make_sidecar",
    "scale_of",
    "source_entities",
    "source_uri",
    "write_dataset_description",
    "sink_factory",
]

LOGGER = logging.getLogger("msica.workflows")

#: Entities taken over from ``source_file`` (others, e.g. ``desc``, ``suffix``,
#: ``label``, ``hemi``, are the source's own and are not inherited).
SOURCE_ENTITIES = (
    "subject",
    "session",
    "task",
    "acquisition",
    "ceagent",
    "reconstruction",
    "direction",
    "run",
    "echo",
    "space",
    "res",
    "den",
)


@lru_cache(maxsize=1)
def _msica_spec() -> dict:
    return json.loads(template_path("msica_bids_config.json").read_text())


@lru_cache(maxsize=1)
def _msica_config() -> Config:
    return Config.load(_msica_spec())


#: Every entity an msica output name may carry (from msica_bids_config.json).
ENTITIES: tuple[str, ...] = tuple(e["name"] for e in _msica_spec()["entities"])


def build_derivative_path(entities: Mapping[str, Any]) -> str:
    """Return the relative path of an msica output with these entities.

    Parameters
    ----------
    entities : mapping of str to str or int
        BIDS entities by their long names (``subject``, ``session``, ``task``,
        ``run``, ``space``, ``res``, ``atlas``, ``scale``, ``statistic``,
        ``desc``, ``suffix``, ``extension``...). ``desc``, ``suffix`` and
        ``extension`` are required; without ``subject`` the file goes to
        ``group/``. Values ``None`` are dropped.

    Returns
    -------
    str
        Path relative to the output directory, with ``/`` separators.

    Raises
    ------
    ValueError
        If no pattern of ``msica_bids_config.json`` accepts these entities
        (unknown entity, unknown suffix/extension pair, or ``desc`` missing).

    Examples
    --------
    >>> build_derivative_path({"subject": "01", "task": "rest", "scale": 10,
    ...     "desc": "ica", "suffix": "components", "extension": ".nii.gz"})
    'sub-01/func/sub-01_task-rest_scale-10_desc-ica_components.nii.gz'
    >>> build_derivative_path({"subject": "01", "task": "rest", "scale": 10,
    ...     "desc": "ica", "suffix": "timeseries", "extension": ".tsv"})
    'sub-01/func/sub-01_task-rest_scale-10_desc-ica_timeseries.tsv'
    >>> build_derivative_path({"subject": "01", "session": "retest", "task": "rest",
    ...     "run": "02", "space": "MNI152NLin2009cAsym", "res": "2", "scale": 50,
    ...     "desc": "ica", "suffix": "components", "extension": ".json"})
    'sub-01/ses-retest/func/sub-01_ses-retest_task-rest_run-02_space-MNI152NLin2009cAsym_res-2_scale-50_desc-ica_components.json'
    >>> build_derivative_path({"subject": "01", "task": "rest", "desc": "multiscale",
    ...     "suffix": "relmat", "extension": ".tsv"})
    'sub-01/func/sub-01_task-rest_desc-multiscale_relmat.tsv'
    >>> build_derivative_path({"subject": "01", "task": "rest", "desc": "qc",
    ...     "suffix": "qc", "extension": ".tsv"})
    'sub-01/func/sub-01_task-rest_desc-qc_qc.tsv'
    >>> build_derivative_path({"subject": "01", "task": "rest", "desc": "denoised",
    ...     "suffix": "bold", "extension": ".nii.gz"})
    'sub-01/func/sub-01_task-rest_desc-denoised_bold.nii.gz'
    >>> build_derivative_path({"task": "rest", "scale": 10, "desc": "template",
    ...     "suffix": "components", "extension": ".nii.gz"})
    'group/task-rest_scale-10_desc-template_components.nii.gz'
    >>> build_derivative_path({"desc": "diagnosis", "suffix": "metrics", "extension": ".tsv"})
    'group/desc-diagnosis_metrics.tsv'
    >>> build_derivative_path({"desc": "gradspectrum", "suffix": "timeseries",
    ...     "extension": ".tsv"})
    'group/desc-gradspectrum_timeseries.tsv'
    """
    clean = {k: v for k, v in entities.items() if v is not None and v != ""}
    unknown = sorted(set(clean) - set(ENTITIES))
    if unknown:
        raise ValueError(
            f"Could not build path with entities {clean}: unknown entities {unknown}; "
            f"msica outputs accept {list(ENTITIES)}."
        )
    ext = clean.get("extension")
    if ext is not None and not str(ext).startswith("."):
        clean["extension"] = f".{ext}"
    path = build_path(clean, _msica_spec()["default_path_patterns"], strict=True)
    if path is None:
        raise ValueError(
            f"Could not build path with entities {clean}. Every msica output needs 'desc', "
            "'suffix' and 'extension', and the suffix/extension pair must be one of the "
            "patterns in bids_templates/msica_bids_config.json."
        )
    return path


def scale_of(path: str | os.PathLike) -> int:
    """The ``scale`` entity of an msica file name (pattern of msica_bids_config.json).

    Examples
    --------
    >>> scale_of("group/scale-10_desc-groupica_components.nii.gz")
    10
    """
    config = [str(template_path("msica_bids_config.json"))]
    return int(parse_file_entities(Path(path).name, config=config)["scale"])


def source_entities(source_file: str | os.PathLike) -> dict[str, Any]:
    """Entities of ``source_file`` that msica outputs inherit (see ``SOURCE_ENTITIES``).

    Examples
    --------
    >>> source_entities("/d/sub-01/func/sub-01_task-rest_run-1_space-MNI152NLin2009cAsym"
    ...                 "_res-2_desc-preproc_bold.nii.gz")
    {'subject': '01', 'task': 'rest', 'run': 1, 'space': 'MNI152NLin2009cAsym', 'res': '2'}
    """
    parsed = parse_file_entities(str(source_file), config=["bids", "derivatives"])
    return {k: parsed[k] for k in SOURCE_ENTITIES if k in parsed}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, fsync and ``os.replace`` it.

    For writers that take a file name (``nibabel``'s ``to_filename``,
    ``DataFrame.to_csv``). The temporary name keeps the final extension
    (``.tmp.nii.gz``) so format inference still works. On an exception the
    temporary file is removed and ``path`` is left untouched.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "t.tsv"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("a\\tb\\n")
    >>> out.read_text()
    'a\\tb\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name.split('.')[0]}.", suffix=".tmp" + "".join(path.suffixes),
        dir=path.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success, fsync and ``os.replace`` it.

    Readers never see a half-written ``path``: either the old file (or none)
    or the complete new one. On an exception the temporary file is removed
    and ``path`` is left untouched.

    Parameters
    ----------
    path : path-like
        Final location. Its parent directory is created if needed.
    mode : {"w", "wb"}
        Text or binary.
    **open_kwargs
        Passed to :func:`open` (e.g. ``newline``); text defaults to UTF-8.

    Yields
    ------
    file object
        Open handle on the temporary file.

    Raises
    ------
    ValueError
        If ``mode`` is not ``"w"`` or ``"wb"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_write(out) as f:
    ...     _ = f.write("hello")
    >>> out.read_text()
    'hello'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"'mode' must be 'w' or 'wb'. Got {mode!r}.")
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as handle:
        yield handle


def _atomic_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fsrc, atomic_write(dst, "wb") as fdst:
        shutil.copyfileobj(fsrc, fdst)


def _atomic_save_nifti(src: Path, dst: Path) -> None:
    import nibabel as nib

    img = nib.load(src)
    with atomic_path(dst) as tmp:
        img.to_filename(tmp)


def source_uri(
    path: str | os.PathLike,
    dataset_links: Mapping[str, str | os.PathLike] | None = None,
    output_dir: str | os.PathLike | None = None,
) -> str:
    """Return the BIDS URI of ``path`` (``bids:<dataset>:<relative path>``).

    Parameters
    ----------
    path : path-like
        File to refer to.
    dataset_links : mapping of str to path-like, optional
        Dataset names (as in ``DatasetLinks`` of dataset_description.json) to
        their roots, e.g. ``{"raw": BIDS_DIR, "fmriprep": DERIV_DIR}``. The
        deepest root containing ``path`` wins.
    output_dir : path-like, optional
        msica's own output directory: files in it become ``bids::<relative path>``.

    Returns
    -------
    str
        A BIDS URI. When no given root contains ``path``, the nearest parent
        folder with a dataset_description.json is used, named ``raw`` for a raw
        dataset and by its folder name for a derivative one (as
        ``workflows.run`` names them in ``DatasetLinks``); failing that, a
        ``file://`` URI (logged).

    Examples
    --------
    >>> source_uri("/data/bids/sub-01/func/sub-01_task-rest_bold.nii.gz", {"raw": "/data/bids"})
    'bids:raw:sub-01/func/sub-01_task-rest_bold.nii.gz'
    >>> source_uri("/out/sub-01/func/x.tsv", output_dir="/out")
    'bids::sub-01/func/x.tsv'
    """
    target = Path(os.path.abspath(path))
    candidates = []
    if output_dir is not None:
        candidates.append(("", Path(os.path.abspath(output_dir))))
    for name, root in (dataset_links or {}).items():
        candidates.append((name, Path(os.path.abspath(root))))
    best = None
    for name, root in candidates:
        if target.is_relative_to(root) and (best is None or len(root.parts) > len(best[1].parts)):
            best = (name, root)
    if best is None:
        for parent in target.parents:
            description = parent / "dataset_description.json"
            if description.is_file():
                try:
                    dataset_type = json.loads(description.read_text()).get("DatasetType", "raw")
                except (ValueError, AttributeError):
                    continue
                name = "raw" if dataset_type == "raw" else parent.name
                return f"bids:{name}:{target.relative_to(parent).as_posix()}"
        LOGGER.warning("%s is in no BIDS dataset; recording it as a file:// URI.", target)
        return target.as_uri()
    return f"bids:{best[0]}:{target.relative_to(best[1]).as_posix()}"


def make_sidecar(
    meta: Mapping[str, Any] | None = None,
    *,
    sources: list[str] | None = None,
) -> dict[str, Any]:
    """Sidecar content: ``meta`` plus msica's name and version and ``Sources``.

    Examples
    --------
    >>> sc = make_sidecar({"ModelOrder": 10}, sources=["bids:raw:sub-01/func/a.nii.gz"])
    >>> sc["ModelOrder"], sc["SoftwareName"], sc["Sources"]
    (10, 'msica', ['bids:raw:sub-01/func/a.nii.gz'])
    """
    sidecar: dict[str, Any] = dict(meta or {})
    sidecar.setdefault("SoftwareName", "msica")
    sidecar.setdefault("SoftwareVersion", __version__)
    if sources:
        existing = list(sidecar.get("Sources", []))
        sidecar["Sources"] = existing + [s for s in sources if s not in existing]
    return sidecar


def _finite(obj: Any) -> Any:
    """NaN/inf floats -> None (JSON has no NaN), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _dump_json(path: Path, content: Mapping[str, Any]) -> None:
    """Write ``content`` as strict JSON (NaN becomes null) atomically."""
    text = json.dumps(content, indent=2, sort_keys=True, default=_json_default)
    text = json.dumps(_finite(json.loads(text)), indent=2, sort_keys=True, allow_nan=False)
    with atomic_write(path) as handle:
        handle.write(text + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Sidecar value of type {type(obj).__name__} is not JSON serializable: {obj!r}.")


def write_dataset_description(
    output_dir: str | os.PathLike,
    *,
    source_datasets: Mapping[str, str | os.PathLike],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``OUTPUT_DIR/dataset_description.json`` once, atomically.

    Safe when several participant jobs call it at the same time: each writes a
    complete temporary file and tries ``os.link`` to the final name, which
    succeeds for exactly one of them; the others find the file and keep it.

    Parameters
    ----------
    output_dir : path-like
        msica's output directory (created if needed).
    source_datasets : mapping of str to path-like
        Input datasets by name, e.g. ``{"raw": BIDS_DIR, "fmriprep": DERIV_DIR}``.
        They become ``DatasetLinks`` (the names used in ``bids:<name>:`` URIs)
        and ``SourceDatasets``.
    extra : mapping, optional
        Additional top-level keys (override the template's).

    Returns
    -------
    pathlib.Path
        Path of dataset_description.json.

    Raises
    ------
    InputDataError
        If ``output_dir`` already holds a dataset_description.json that is not
        valid JSON or was not generated by msica.
    """
    from pipeline.exceptions import InputDataError

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / "dataset_description.json"
    if not final.exists():
        desc = json.loads(template_path("dataset_description.json").read_text())
        desc["GeneratedBy"][0]["Version"] = __version__
        links = {name: Path(os.path.abspath(p)).as_uri() for name, p in source_datasets.items()}
        desc["DatasetLinks"] = links
        desc["SourceDatasets"] = [{"URL": url} for url in links.values()]
        desc.update(extra or {})
        fd, tmp = tempfile.mkstemp(prefix=".dataset_description.", suffix=".tmp", dir=output_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(desc, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, final)  # atomic create-if-absent: one writer wins
        finally:
            os.unlink(tmp)
    try:
        existing = json.loads(final.read_text(encoding="utf-8"))
        generator = existing["GeneratedBy"][0]["Name"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputDataError(
            f"{final} exists but is not a valid msica dataset_description.json ({exc!r}); "
            "delete it or choose an empty OUTPUT_DIR."
        ) from exc
    if generator != "msica":
        raise InputDataError(
            f"{final} was generated by {generator!r}, not msica; choose an empty OUTPUT_DIR "
            "(msica must not write into another pipeline's derivatives)."
        )
    return final


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
        in_file = Path(self.inputs.in_file)
        entities: dict[str, Any] = {}
        if isdefined(self.inputs.source_file):
            entities.update(source_entities(self.inputs.source_file))
        for key in ENTITIES:
            value = getattr(self.inputs, key)
            if isdefined(value):
                entities[key] = value
        if "extension" not in entities:
            entities["extension"] = "".join(in_file.suffixes[-2:] if in_file.name.endswith(".gz")
                                            else in_file.suffixes[-1:])
        base = Path(self.inputs.base_directory)
        out_file = base / build_derivative_path(entities)
        out_meta = base / build_derivative_path({**entities, "extension": ".json"})

        nifti_exts = (".nii", ".nii.gz")
        src_ext = ".nii.gz" if in_file.name.endswith(".nii.gz") else in_file.suffix
        if src_ext in nifti_exts and entities["extension"] in nifti_exts and src_ext != entities[
            "extension"
        ]:
            _atomic_save_nifti(in_file, out_file)
        else:
            _atomic_copy(in_file, out_file)

        links = self.inputs.dataset_links if isdefined(self.inputs.dataset_links) else {}
        sources = []
        if isdefined(self.inputs.source_file):
            sources.append(self.inputs.source_file)
        if isdefined(self.inputs.sources):
            sources.extend(self.inputs.sources)
        uris = [s if s.startswith(("bids:", "file:")) else source_uri(s, links, base)
                for s in sources]
        meta = self.inputs.meta_dict if isdefined(self.inputs.meta_dict) else {}
        _dump_json(out_meta, make_sidecar(meta, sources=uris))
        self._results["out_file"] = str(out_file)
        self._results["out_meta"] = str(out_meta)
        return runtime


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

