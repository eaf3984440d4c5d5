"""Provenance of every output: JSON sidecars, BIDS URIs of the sources, dataset_description.json."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bids_templates import template_path
from pipeline import __version__
from workflows.bids.atomic import atomic_write

__all__ = ["make_sidecar", "read_sidecar", "source_uri", "write_dataset_description",
           "write_sidecar"]

LOGGER = logging.getLogger("msica.workflows")

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
        ``workflows.execution.levels`` names them in ``DatasetLinks``); failing that, a
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


def write_sidecar(path: Path, content: Mapping[str, Any]) -> None:
    """Write ``content`` as strict JSON (NaN becomes null) atomically."""
    text = json.dumps(content, indent=2, sort_keys=True, default=_json_default)
    text = json.dumps(_finite(json.loads(text)), indent=2, sort_keys=True, allow_nan=False)
    with atomic_write(path) as handle:
        handle.write(text + "\n")


def read_sidecar(path: str | os.PathLike, *, required: bool = False) -> dict[str, Any]:
    """The JSON sidecar of a derivative: ``<name before the extension>.json`` beside it.

    Parameters
    ----------
    path : path-like
        The derivative (``.tsv``, ``.nii.gz``...) or the sidecar itself.
    required : bool, default=False
        Raise when the sidecar is missing; otherwise return ``{}``.

    Returns
    -------
    dict

    Raises
    ------
    InputDataError
        If the sidecar is not a JSON object, or is missing and ``required``; the message
        names it and says to rerun the level that wrote it.

    Examples
    --------
    >>> read_sidecar("/nowhere/sub-01_desc-multiscale_relmat.tsv")
    {}
    """
    from pipeline.exceptions import InputDataError

    path = Path(path)
    sidecar = path.with_name(path.name.split(".")[0] + ".json")
    fix = "rerun the level that wrote it."
    if not sidecar.is_file():
        if required:
            raise InputDataError(f"{sidecar} is missing; {fix}")
        return {}
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{sidecar} cannot be read as JSON ({exc}); {fix}") from exc
    if not isinstance(content, dict):
        raise InputDataError(f"{sidecar} holds no JSON object; {fix}")
    return content


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
