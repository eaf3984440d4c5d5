"""Read what the reports show back from the derivatives on disk.

Files are found with :func:`workflows.bids.derivatives.derivatives_layout` (participant outputs), by
:func:`workflows.bids.naming.build_derivative_path` names (group outputs), and through the
``Sources`` BIDS URIs of the sidecars resolved with ``DatasetLinks`` (the fMRIPrep inputs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from workflows.bids.layout import companion_entities
from workflows.bids.naming import file_entities, scale_of
from workflows.bids.provenance import read_sidecar

__all__ = [
    "edges_to_matrix",
    "input_companion",
    "labels_by_scale",
    "node_domains",
    "node_groups",
    "resolve_uri",
]

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
        Also match the grid's entities (images); tables have none. The entities
        are those the participant level matched the run's inputs on
        (:func:`workflows.bids.layout.companion_entities`).
    """
    bold_file = Path(bold_file)
    ents = file_entities(bold_file)
    wanted = {k: ents.get(k) for k in companion_entities(same_grid=same_grid)}
    for candidate in sorted(bold_file.parent.glob(f"*_desc-{desc}_{suffix}.*")):
        if candidate.name.endswith(".json"):
            continue
        found = file_entities(candidate)
        if all(found.get(k) == v for k, v in wanted.items()):
            return candidate
    return None


def labels_by_scale(component_files: Sequence[str | Path]) -> dict[int, pd.DataFrame]:
    """The network labels and domains of each scale, from the maps' sidecars.

    The back-reconstruction records ``NetworkLabels`` and ``NetworkDomains`` (from the
    template's labels file, whatever its format or the template's name) and the labels
    file itself (``TemplateLabels``) in the sidecar of every participant's maps. When that
    file is a TSV with one row per network, its other columns (e.g. ``parent`` and
    ``stability`` of a data-driven template) are kept.

    Returns
    -------
    dict of int to pandas.DataFrame
        Per scale, at least the columns ``label`` and ``domain`` (``""`` where unknown).
    """
    out: dict[int, pd.DataFrame] = {}
    for component_file in component_files:
        meta = read_sidecar(component_file)
        labels = [str(label) for label in meta.get("NetworkLabels", [])]
        domains = [str(d) for d in meta.get("NetworkDomains", [])]
        table = pd.DataFrame({"label": labels,
                              "domain": domains if len(domains) == len(labels) else ""})
        source = Path(str(meta.get("TemplateLabels") or ""))
        if source.name.endswith(".tsv") and source.is_file():
            given = pd.read_csv(source, sep="\t", dtype=str, keep_default_na=False)
            if len(given) == len(table):
                table = given.drop(columns=["label", "domain"], errors="ignore").join(table)
        out[scale_of(component_file)] = table
    return out


def node_domains(relmat_file: str | Path | None) -> dict[str, str]:
    """``{FNC node: domain}`` from the sidecar of a static FNC matrix (``{}`` without one)."""
    if relmat_file is None:
        return {}
    meta = read_sidecar(relmat_file)
    nodes, domains = meta.get("NodeLabels", []), meta.get("NodeDomains", [])
    return dict(zip(map(str, nodes), map(str, domains))) if len(nodes) == len(domains) else {}


def node_groups(nodes: Sequence[str], domains: Mapping[str, str]) -> list[str]:
    """Group name of each FNC node: its scale and, when known, its functional domain.

    Parameters
    ----------
    nodes : sequence of str
        msica's FNC nodes ``s<scale>-<label>``.
    domains : mapping of str to str
        Domain of each node (see :func:`node_domains`); missing or ``""`` for none.

    Examples
    --------
    >>> node_groups(["s4-a", "s4-b", "s10-c"], {})
    ['scale 4', 'scale 4', 'scale 10']
    >>> node_groups(["s53-N1", "s53-N6"], {"s53-N1": "SC", "s53-N6": "AU"})
    ['SC', 'AU']
    """
    from pipeline.fnc.names import NODE_PATTERN

    matches = [NODE_PATTERN.match(str(node)) for node in nodes]
    scales = [m["scale"] if m and m["scale"].isdigit() else None for m in matches]
    multi = len({s for s in scales if s is not None}) > 1
    groups = []
    for node, scale in zip(nodes, scales, strict=True):
        if scale is None:
            groups.append("networks")
            continue
        domain = str(domains.get(str(node), ""))
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
