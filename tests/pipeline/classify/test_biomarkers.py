"""Tests for the biomarker report and figure."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pipeline.classify.biomarkers import biomarker_report, parse_edge_name, plot_top_connections
from pipeline.classify.targets import derive_target


def _selected(cohort, n_folds=4, n_noise=3, seed=0):
    """Planted edges in every fold plus random other edges in some folds."""
    names = list(cohort.features.columns)
    planted = [names.index(p) for p in cohort.planted]
    rng = np.random.RandomState(seed)
    others = [i for i in range(len(names)) if i not in planted]
    return [np.r_[planted, rng.choice(others, n_noise, replace=False)] for _ in range(n_folds)]


def test_planted_edges_ranked_first(cohort):
    tgt = derive_target(cohort.participants, "diagnosis")
    X = cohort.features.loc[tgt.participant_ids].to_numpy()
    labels = pd.DataFrame({"scale": [4] * 4 + [6] * 6,
                           "label": [f"N{i + 1}" for i in range(4)] + [f"N{i + 1}" for i in range(6)],
                           "domain": ["SM"] * 4 + ["DMN"] * 6})
    rep = biomarker_report(cohort.features.columns, _selected(cohort), X, tgt.y.to_numpy(),
                           pos_label="patient", label_table=labels)
    assert set(rep["feature"].head(3)) == set(cohort.planted)
    top = rep.set_index("feature").loc[list(cohort.planted)]
    assert (top["selection_frequency"] == 1.0).all()
    assert (top["cohens_d"] > 0.8).all()
    assert top["direction"].eq("higher in patient").all()
    assert top.loc["s4-N1__s6-N2", "scales"] == "cross"
    assert top.loc["s6-N3__s6-N5", "scales"] == "within"
    assert top.loc["s4-N1__s6-N2", "domain_a"] == "SM" and top.loc["s4-N1__s6-N2", "domain_b"] == "DMN"


def test_multiclass_report_uses_eta_squared(cohort):
    tgt = derive_target(cohort.participants, "response")
    X = cohort.features.loc[tgt.participant_ids].to_numpy()
    rep = biomarker_report(cohort.features.columns, _selected(cohort), X, tgt.y.to_numpy())
    assert "eta_squared" in rep and rep["eta_squared"].between(0, 1).all()
    assert rep["feature"].iloc[0] in cohort.planted[:2]


def test_parse_edge_name():
    info = parse_edge_name("s4-N1__s10-N3")
    assert (info["scale_a"], info["label_a"], info["scale_b"], info["label_b"]) == ("4", "N1", "10", "N3")
    assert parse_edge_name("roiA__roiB")["scale_a"] is None
    with pytest.raises(ValueError, match="is not an edge"):
        parse_edge_name("amplitude")


def test_plot_and_errors(cohort):
    tgt = derive_target(cohort.participants, "diagnosis")
    X = cohort.features.loc[tgt.participant_ids].to_numpy()
    rep = biomarker_report(cohort.features.columns, _selected(cohort), X, tgt.y.to_numpy())
    fig = plot_top_connections(rep, top=5)
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_top_connections(rep.iloc[:0])
    with pytest.raises(ValueError, match="one column per feature name"):
        biomarker_report(["a__b"], [[0]], X, tgt.y.to_numpy())
