"""The one rule for FNC node and edge names (pipeline/fnc/names.py)."""

import io
import tokenize
from pathlib import Path

import pytest

from pipeline.features import edge_labels
from pipeline.fnc.names import (
    EDGE_SEP,
    edge_name,
    is_edge,
    network_labels,
    node_feature_name,
    split_edge,
)

ROOT = Path(__file__).resolve().parents[3]


def test_edge_name_round_trip():
    nodes = network_labels(4, 2) + network_labels(10, 1, ["DMN"])
    assert nodes == ["s4-N1", "s4-N2", "s10-DMN"]
    for a in nodes:
        for b in nodes:
            name = edge_name(a, b)
            assert is_edge(name) and split_edge(name) == (a, b)
    assert edge_labels(nodes) == [edge_name("s4-N1", "s4-N2"), edge_name("s4-N1", "s10-DMN"),
                                  edge_name("s4-N2", "s10-DMN")]


@pytest.mark.parametrize("name", ["age", "s4-N1", f"s4-N1{EDGE_SEP}", f"{EDGE_SEP}s4-N1"])
def test_split_edge_refuses_non_edges(name):
    with pytest.raises(ValueError, match="is not an edge name"):
        split_edge(name)


def test_separator_is_spelled_once():
    """No module of pipeline/ or workflows/ spells the edge separator itself."""
    offenders = []
    for package in ("pipeline", "workflows"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "pipeline" / "fnc" / "names.py":
                continue
            tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
            for token in tokens:
                if token.type == tokenize.STRING and (
                        token.string.strip("\"'") == EDGE_SEP or "}__{" in token.string):
                    offenders.append(f"{path.relative_to(ROOT)}:{token.start[0]}")
    assert offenders == []


def test_node_feature_names_are_not_edges():
    for node in network_labels(4, 2) + network_labels(10, 1, ["DMN_1"]):
        for feature in ("amplitude", "falff", "dynamic_range"):
            name = node_feature_name(feature, node)
            assert name == f"{feature}_{node}" and not is_edge(name)
