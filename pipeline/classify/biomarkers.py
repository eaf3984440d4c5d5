"""Biomarker report: selected FNC edges mapped back to network pairs, domains and scales.

Edge columns are named ``"<node_a>__<node_b>"`` with nodes ``"s<scale>-<label>"``
(:func:`pipeline.features.edge_labels`). The report lists every edge selected in
at least one outer fold with its selection stability, effect size and direction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.fnc.names import NODE_PATTERN, split_edge

__all__ = ["biomarker_report", "parse_edge_name", "plot_top_connections"]


def parse_edge_name(name: str) -> dict:
    """Split an edge name into its two nodes, their scales and labels.

    Parameters
    ----------
    name : str
        ``"s4-N1__s10-N3"``; nodes without the ``s<scale>-`` prefix get scale ``None``.

    Returns
    -------
    dict
        ``node_a, node_b, scale_a, label_a, scale_b, label_b``.

    Raises
    ------
    ValueError
        If ``name`` is not an edge name (:func:`pipeline.fnc.names.split_edge`).

    Examples
    --------
    >>> parse_edge_name("s4-N1__s10-N3")["scale_b"]
    '10'
    """
    a, b = split_edge(name)
    out = {"node_a": a, "node_b": b}
    for side, node in (("a", a), ("b", b)):
        match = NODE_PATTERN.match(node)
        out[f"scale_{side}"] = match["scale"] if match else None
        out[f"label_{side}"] = match["label"] if match else node
    return out


def _domains(label_table: pd.DataFrame | None) -> dict:
    """``{(scale, label): domain}`` and ``{label: domain}`` lookups from a label table."""
    if label_table is None or "domain" not in label_table.columns:
        return {}
    lookup = {}
    for row in label_table.itertuples(index=False):
        row = row._asdict()
        label = str(row["label"])
        if "scale" in row:
            lookup[(str(row["scale"]), label)] = row["domain"]
        lookup.setdefault((None, label), row["domain"])
    return lookup


def biomarker_report(
    feature_names,
    selected,
    X,
    y,
    *,
    pos_label=None,
    label_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Edges selected across outer folds, with stability, effect size and direction.

    Parameters
    ----------
    feature_names : sequence of str, length n_features
        Edge names (columns of the feature matrix, confounds excluded).
    selected : list of array-like of int
        Selected feature indices of each outer fold
        (:attr:`NestedCVResult.selected`).
    X : array-like of shape (n_samples, n_features)
        Features (without confound columns), for effect sizes.
    y : array-like of shape (n_samples,)
    pos_label : object or None
        Class whose increase defines the direction; default the last sorted class.
    label_table : pandas.DataFrame or None
        Columns ``label`` and ``domain`` (and ``scale``) naming each network's
        functional domain (e.g. NeuroMark's tables).

    Returns
    -------
    pandas.DataFrame
        One row per edge selected at least once, best first (selection frequency,
        then absolute effect size): ``feature, node_a, node_b, scale_a, label_a,
        scale_b, label_b, domain_a, domain_b, scales ("within"/"cross"),
        selection_frequency, cohens_d, direction``. Multi-class targets report
        ``eta_squared`` and no direction.

    Raises
    ------
    ValueError
        If ``X`` does not have one column per feature name.
    """
    names = [str(n) for n in feature_names]
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"'X' must have one column per feature name ({len(names)}). "
                         f"Got shape {X.shape}.")
    counts = np.zeros(len(names))
    for fold in selected:
        counts[np.asarray(fold, dtype=int)] += 1
    n_folds = max(len(selected), 1)
    idx = np.flatnonzero(counts)
    classes = np.unique(y)
    pos_label = classes[-1] if pos_label is None else pos_label
    domains = _domains(label_table)
    rows = []
    for i in idx:
        info = parse_edge_name(names[i])
        row = {"feature": names[i], **info}
        for side in ("a", "b"):
            key = (info[f"scale_{side}"], info[f"label_{side}"])
            row[f"domain_{side}"] = domains.get(key, domains.get((None, key[1]), "n/a"))
        row["scales"] = "within" if info["scale_a"] == info["scale_b"] else "cross"
        row["selection_frequency"] = counts[i] / n_folds
        col = X[:, i]
        if len(classes) == 2:
            a, b = col[y == pos_label], col[y != pos_label]
            pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                             / max(len(a) + len(b) - 2, 1))
            d = (a.mean() - b.mean()) / pooled if pooled > 0 else 0.0
            row["cohens_d"] = d
            row["direction"] = f"{'higher' if d > 0 else 'lower'} in {pos_label}"
        else:
            grand = col.mean()
            ssb = sum(np.sum(y == c) * (col[y == c].mean() - grand) ** 2 for c in classes)
            sst = np.sum((col - grand) ** 2)
            row["eta_squared"] = ssb / sst if sst > 0 else 0.0
        rows.append(row)
    report = pd.DataFrame(rows)
    if report.empty:
        return report
    strength = report["cohens_d"].abs() if "cohens_d" in report else report["eta_squared"]
    report = report.assign(_s=strength).sort_values(["selection_frequency", "_s"],
                                                    ascending=False, kind="stable")
    return report.drop(columns="_s").reset_index(drop=True)


def plot_top_connections(report: pd.DataFrame, *, top: int = 20, title: str | None = None,
                         axes=None):
    """Matrix figure of the ``top`` connections of a biomarker report.

    Cells hold Cohen's d times the selection frequency (eta² for multi-class),
    symmetric, over the nodes involved; drawn with :func:`nilearn.plotting.plot_matrix`.

    Parameters
    ----------
    report : pandas.DataFrame
        Output of :func:`biomarker_report`.
    top : int, default=20
    title : str or None
    axes : matplotlib Axes or None

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``report`` is empty.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from nilearn.plotting import plot_matrix

    if report.empty:
        raise ValueError("'report' is empty: no feature was selected in any fold; nothing to plot.")
    head = report.head(top)
    nodes = sorted(set(head["node_a"]) | set(head["node_b"]),
                   key=lambda n: (len(n), n))
    pos = {n: i for i, n in enumerate(nodes)}
    mat = np.zeros((len(nodes), len(nodes)))
    value = head["cohens_d"] if "cohens_d" in head else head["eta_squared"]
    for (a, b), v, f in zip(head[["node_a", "node_b"]].itertuples(index=False), value,
                            head["selection_frequency"], strict=True):
        mat[pos[a], pos[b]] = mat[pos[b], pos[a]] = v * f
    if axes is None:
        size = 3 + 0.4 * len(nodes)
        fig = Figure(figsize=(size + 1, size))
        FigureCanvasAgg(fig)  # a renderer without pyplot's global state
        axes = fig.add_subplot()
    vmax = float(np.abs(mat).max()) or 1.0
    plot_matrix(mat, labels=nodes, axes=axes, vmin=-vmax, vmax=vmax, cmap="RdBu_r",
                title=title or f"top {len(head)} connections (effect x stability)")
    return axes.figure
