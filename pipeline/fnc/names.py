"""The one rule for FNC node and edge names: ``"s<scale>-<label>"`` and ``"<a>__<b>"``.

Every module that builds, recognises or splits a node or edge name (the FNC
tables, the classifiers' feature columns, the reports, ``msica sites``) goes
through this module, so the separator lives in one place. The columns of per-node
features (``"amplitude_s4-N1"``, :func:`node_feature_name`) are built here too, with
another separator, so that :func:`is_edge` is false for them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["EDGE_SEP", "NODE_FEATURE_SEP", "NODE_PATTERN", "edge_name", "is_edge",
           "network_labels", "node_feature_name", "split_edge"]

#: FNC node names made by :func:`network_labels`: ``s<scale>-<label>``.
NODE_PATTERN = re.compile(r"^s(?P<scale>[^-]+)-(?P<label>.+)$")
#: Separator of the two nodes in an edge (feature) name, ``"s4-N1__s10-N3"``.
EDGE_SEP = "__"
#: Separator of a per-node feature and its node, ``"amplitude_s4-N1"`` (not an edge).
NODE_FEATURE_SEP = "_"


def network_labels(scale: Any, n_networks: int, labels: Sequence[str] | None = None) -> list[str]:
    """Multi-scale node names ``"s<scale>-<label>"`` (e.g. ``"s4-N1"``).

    Parameters
    ----------
    scale : int or str
        Model order of the scale.
    n_networks : int
        Number of networks of the scale.
    labels : sequence of str, optional
        Network labels; ``N1 ... Nk`` when omitted.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        If ``labels`` does not have ``n_networks`` entries.

    Examples
    --------
    >>> network_labels(4, 2)
    ['s4-N1', 's4-N2']
    """
    if labels is None:
        labels = [f"N{i + 1}" for i in range(n_networks)]
    labels = [str(lab) for lab in labels]
    if len(labels) != n_networks:
        raise ValueError(
            f"'labels' for scale {scale} must have one entry per network ({n_networks}). "
            f"Got {len(labels)}."
        )
    return [f"s{scale}-{lab}" for lab in labels]


def edge_name(node_a: Any, node_b: Any) -> str:
    """The name of the edge between two nodes, ``"<node_a>__<node_b>"``.

    Parameters
    ----------
    node_a, node_b : str
        Node names (usually from :func:`network_labels`).

    Returns
    -------
    str

    Examples
    --------
    >>> edge_name("s4-N1", "s10-N3")
    's4-N1__s10-N3'
    """
    return f"{node_a}{EDGE_SEP}{node_b}"


def node_feature_name(feature: str, node: Any) -> str:
    """The column of a feature of one node, ``"<feature>_<node>"``; not an edge name.

    Parameters
    ----------
    feature : str
        What is measured (``"amplitude"``, ``"falff"``, ``"dynamic_range"``).
    node : str
        A node name (usually from :func:`network_labels`).

    Returns
    -------
    str

    Examples
    --------
    >>> name = node_feature_name("dynamic_range", "s4-N1")
    >>> name, is_edge(name)
    ('dynamic_range_s4-N1', False)
    """
    return f"{feature}{NODE_FEATURE_SEP}{node}"


def is_edge(column: Any) -> bool:
    """Whether a table column is an edge: its name contains :data:`EDGE_SEP`.

    Parameters
    ----------
    column : str
        A column name of a feature table.

    Returns
    -------
    bool

    Examples
    --------
    >>> is_edge("s4-N1__s10-N3"), is_edge("age")
    (True, False)
    """
    return EDGE_SEP in str(column)


def split_edge(name: Any) -> tuple[str, str]:
    """The two node names of an edge name.

    Parameters
    ----------
    name : str
        ``"<node_a>__<node_b>"``.

    Returns
    -------
    (str, str)
        ``node_a`` and ``node_b`` (split at the first separator).

    Raises
    ------
    ValueError
        If ``name`` has no separator or an empty node.

    Examples
    --------
    >>> split_edge("s4-N1__s10-N3")
    ('s4-N1', 's10-N3')
    """
    a, sep, b = str(name).partition(EDGE_SEP)
    if not sep or not a or not b:
        raise ValueError(f"{name!r} is not an edge name '<node_a>{EDGE_SEP}<node_b>' "
                         "(e.g. 's4-N1__s10-N3'); pass FNC edge columns.")
    return a, b
