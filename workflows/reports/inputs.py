"""Read what the reports show back from the derivatives on disk.

Files are found with :func:`workflows.group.derivatives_layout` (participant outputs), by
:func:`workflows.derivatives.build_derivative_path` names (group outputs), and through the
``Sources`` BIDS URIs of the sidecars resolved with ``DatasetLinks`` (the fMRIPrep inputs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from workflows.derivatives import scale_of

__all__ = [
    "edges_to_matrix",
    "input_companion",
    "labels_by_scale",
    "node_groups",
    "read_sidecar",
    "resolve_uri",
]

LOGGER = logging.getLogger("msica.reports")

def read_sidecar(path: str | Path) -> dict:
    """The JSON sidecar of a derivative (``{}`` when it has none)."""
    path = Path(path)
    stem = path.name.split(".")[0]
    sidecar = path.with_name(stem + ".json")
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}


def _dataset_links(output_dir: Path) -> dict[str, Path]:
    description = output_dir / "dataset_description.json"
    links = json.loads(description.read_text()).get("DatasetLinks", {}) if (
        description.is_file()) else {}
    return {name: Path(unquote(urlparse(url).path)) if str(url).startswith("file:")
            else Path(url) for name, url in links.items()}


def resolve_uri(uri: str, output_dir: str | Path) -> Path | None:
    """Path of a ``bids:<dataset>:<path>`` URI written by msica (``None`` if it cannot be found).

    Examples
    --------
    >>> resolve_uri("bids::sub-01/func/x.tsv", "/out")
    PosixPath('/out/sub-01/func/x.tsv')
    """
    output_dir = Path(output_dir)
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    scheme, _, rest = uri.partition(":")
    dataset, _, relative = rest.partition(":")
    if scheme != "bids" or not relative:
        return None
    root = output_dir if not dataset else _dataset_links(output_dir).get(dataset)
    return None if root is None else root / relative


_RUN_ENTITIES = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo")
_IMAGE_ENTITIES = ("space", "res", "den", "cohort")


def _entities(name: str) -> dict[str, str]:
    return dict(part.split("-", 1) for part in name.split("_")[:-1] if "-" in part)


def input_companion(bold_file: str | Path, desc: str, suffix: str, *,
                    same_grid: bool) -> Path | None:
    """The fMRIPrep file of a run next to its BOLD (e.g. confounds table, brain mask).

    Parameters
    ----------
    bold_file : path-like
        Preprocessed BOLD.
    desc, suffix : str
        Of the companion (``"confounds", "timeseries"``; ``"brain", "mask"``).
    same_grid : bool
        Also match ``space``/``res``/``den`` (images); tables have none.
    """
    bold_file = Path(bold_file)
    ents = _entities(bold_file.name)
    keys = _RUN_ENTITIES + (_IMAGE_ENTITIES if same_grid else ())
    wanted = {k: ents.get(k) for k in keys}
    for candidate in sorted(bold_file.parent.glob(f"*_desc-{desc}_{suffix}.*")):
        if candidate.name.endswith(".json"):
            continue
        found = _entities(candidate.name)
        if all(found.get(k) == v for k, v in wanted.items()):
            return candidate
    return None


def _template_labels_of_runs(output_dir: Path) -> dict[str, str]:
    """``{template: labels TSV}`` from the settings each participant-level run recorded."""
    from workflows.config import tomllib

    pairs: dict[str, str] = {}
    for toml_file in sorted((output_dir / "logs").glob("msica-*.toml")):
        try:
            data = tomllib.loads(toml_file.read_text())["msica"]
        except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
            LOGGER.debug("Skipping %s: %s", toml_file, exc)
            continue
        templates, labels = data.get("templates", []), data.get("template_labels", [])
        if len(templates) == len(labels):
            pairs.update(zip(map(str, templates), map(str, labels), strict=True))
    return pairs


def labels_by_scale(component_files: Sequence[str | Path], output_dir: str | Path
                    ) -> dict[int, pd.DataFrame | None]:
    """The template labels table of each scale of a participant's network maps.

    The template of each scale is the ``Template`` of the maps' sidecar; its labels TSV is
    the one given with it (``--template-labels``, read from ``logs/msica-*.toml``), else a
    ``*_labels.tsv`` beside it, else none. Tables that do not have one row per network
    are dropped (with a debug message).
    """
    recorded = _template_labels_of_runs(Path(output_dir))
    out: dict[int, pd.DataFrame | None] = {}
    for component_file in component_files:
        meta = read_sidecar(component_file)
        scale = scale_of(component_file)
        template = str(meta.get("Template", ""))
        candidates = [recorded.get(template),
                      template.replace("_components.nii.gz", "_labels.tsv") if template else None]
        table = None
        for candidate in candidates:
            if candidate and Path(candidate).is_file():
                table = pd.read_csv(candidate, sep="\t", dtype=str, keep_default_na=False)
                break
        n_networks = meta.get("NumberOfNetworks")
        if table is not None and n_networks is not None and len(table) != n_networks:
            LOGGER.debug("Labels of scale %s have %d rows for %s networks; not used.", scale,
                         len(table), n_networks)
            table = None
        out[scale] = table
    return out


def _domain_column(table: pd.DataFrame | None) -> str | None:
    if table is None:
        return None
    return next((c for c in ("domain_name", "domain") if c in table.columns), None)


def node_groups(nodes: Sequence[str], labels: Mapping[int, pd.DataFrame | None]) -> list[str]:
    """Group name of each FNC node: its scale and, when the labels TSV has one, its domain.

    Nodes are msica's ``s<scale>-<label>``; the i-th node of a scale is the i-th row of
    that scale's labels table.

    Examples
    --------
    >>> node_groups(["s4-a", "s4-b", "s10-c"], {})
    ['scale 4', 'scale 4', 'scale 10']
    """
    from pipeline.fnc.static import NODE_PATTERN

    matches = [NODE_PATTERN.match(str(node)) for node in nodes]
    matches = [m if m and m["scale"].isdigit() else None for m in matches]
    multi = len({int(m["scale"]) for m in matches if m}) > 1
    position: dict[int, int] = {}
    groups = []
    for match in matches:
        if match is None:
            groups.append("networks")
            continue
        scale = int(match["scale"])
        index = position.get(scale, 0)
        position[scale] = index + 1
        table = labels.get(scale)
        column = _domain_column(table)
        domain = str(table[column].iloc[index]) if column and index < len(table) else ""
        prefix = f"scale {scale}" if multi or not domain else ""
        groups.append(" ".join(p for p in (prefix, domain) if p and p not in ("NA", "n/a")))
    return groups


def edges_to_matrix(edges: pd.Series) -> pd.DataFrame:
    """Square symmetric matrix (zero diagonal) from values indexed by ``"<node>__<node>"``.

    Examples
    --------
    >>> float(edges_to_matrix(pd.Series({"a__b": 1.0, "a__c": 2.0, "b__c": 3.0})).loc["c", "b"])
    3.0
    """
    from pipeline.classify.biomarkers import parse_edge_name

    pairs = [parse_edge_name(name) for name in edges.index]
    nodes = list(dict.fromkeys(n for p in pairs for n in (p["node_a"], p["node_b"])))
    matrix = pd.DataFrame(0.0, index=nodes, columns=nodes)
    for pair, value in zip(pairs, edges.to_numpy(dtype=float), strict=True):
        matrix.loc[pair["node_a"], pair["node_b"]] = value
        matrix.loc[pair["node_b"], pair["node_a"]] = value
    return matrix
