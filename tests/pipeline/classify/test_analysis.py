"""classify_target end to end on the simulator's true static FNC (ground-truth effects)."""

import numpy as np
import pytest

from pipeline.classify.analysis import (
    classify_target,
    describe_outcome,
    metrics_table,
    site_metrics_table,
)
from pipeline.classify.harmonize import resolve_harmonize
from pipeline.classify.persistence import load_model, predict_table, save_model
from pipeline.classify.search import resolve_inner_split

simulate = pytest.importorskip("pipeline.simulate", reason="simulator not available")
features_mod = pytest.importorskip("pipeline.features", reason="feature tables not available")


@pytest.fixture(scope="module")
def sim():
    """48 simulated participants at 3 sites; features = true static FNC of each participant."""
    cohort = simulate.simulate_cohort(n_subjects=48, n_sites=3, n_volumes=30, grid_mm=12.0,
                                      random_state=0)
    fnc = np.stack([s.fnc for s in cohort.subjects])
    feats = features_mod.static_fnc_table(fnc, cohort.node_labels,
                                          [s.participant_id for s in cohort.subjects])
    participants = cohort.participants.copy()
    participants["mean_fd"] = [s.confounds["framewise_displacement"].mean() for s in cohort.subjects]
    return cohort, feats, participants


def _parents(labels):
    """``{node: node of its parent}`` (``s<scale>-<label>``) for the networks that have one."""
    scales = sorted(set(labels["scale"]))
    coarser = dict(zip(scales[1:], scales[:-1]))
    return {f"s{s}-{lab}": f"s{coarser[s]}-{p}" for s, lab, p in
            zip(labels["scale"], labels["label"], labels["parent"], strict=True) if p != "n/a"}


def _coarse_pair(edge, parent):
    return frozenset(parent.get(node, node) for node in edge.split("__"))


@pytest.mark.parametrize(("target", "n_top", "min_bacc"),
                         [("diagnosis", 3, 0.85), ("medication", 1, 0.7), ("response", 1, 0.7)])
def test_simulated_targets(sim, target, n_top, min_bacc):
    cohort, feats, participants = sim
    out = classify_target(feats, participants, target, confounds=("age", "sex", "mean_fd"),
                          k_grid=(1, 3, 10, "all"), n_splits=3, inner_cv=3, n_bootstrap=100,
                          random_state=0)
    assert out.cv.balanced_accuracy > min_bacc
    if target != "diagnosis":  # patients only
        dx = participants.set_index("participant_id").loc[out.target.participant_ids, "diagnosis"]
        assert (dx == "patient").all()
    assert out.cv.folds["test_sites"].str.count(",").eq(0).all()  # leave one site out
    # the simulator's planted latent changes spread to the children of the planted pair,
    # so the top biomarkers must lie on a planted (coarse-ancestor) network pair
    parent = _parents(cohort.labels)
    eff = cohort.effects[cohort.effects["target"] == target]
    planted = {_coarse_pair(f"s{a}-{la}__s{b}-{lb}", parent) for a, la, b, lb in
               zip(eff.scale_a, eff.label_a, eff.scale_b, eff.label_b, strict=True)}
    top = out.biomarkers["feature"].head(n_top)
    assert all(_coarse_pair(edge, parent) in planted for edge in top)


def test_final_model_saved_and_reapplied(sim, tmp_path):
    _, feats, participants = sim
    out = classify_target(feats, participants, "diagnosis", k_grid=(3,), n_splits=3, inner_cv=2,
                          n_bootstrap=0, n_permutations=3, random_state=0)
    assert out.permutation.p_value == pytest.approx(0.25)  # best possible with 3 permutations
    # every fold records the settings it used, "auto" ones as decided on its training sites
    for fold in out.cv.folds.to_dict(orient="records"):
        train_sites = out.sites[~np.isin(out.sites, fold["test_sites"].split(","))]
        assert fold["harmonize"] == resolve_harmonize("auto", train_sites)
        assert fold["inner_split"] == resolve_inner_split("auto", train_sites)
        assert (fold["calibration"], fold["combine"]) == ("none", "mean")
        assert isinstance(fold["split_seed"], (int, np.integer))
    table = metrics_table(out)
    assert table.loc["permutation_p_value", "estimate"] == pytest.approx(0.25)
    assert {"baseline_estimate", "baseline_ci_low"} <= set(table.columns)
    assert table.loc["balanced_accuracy", "baseline_estimate"] == \
        pytest.approx(out.baseline.balanced_accuracy)
    per_site = site_metrics_table(out)  # msica's and, beside, the baseline's per test site
    assert sorted(per_site["site"]) == sorted(set(out.sites))
    assert {"balanced_accuracy", "baseline_balanced_accuracy"} <= set(per_site.columns)
    meta = describe_outcome(out, kinds=None, harmonize="auto", n_permutations=3,
                            random_state=0)
    assert (meta["Target"], meta["SiteColumn"], meta["NumberOfParticipants"]) == (
        "diagnosis", "site", len(out.target.y))
    assert meta["ChanceTested"] and meta["PermutationPValue"] == pytest.approx(0.25)
    assert meta["BaselineBalancedAccuracy"] == out.baseline.balanced_accuracy
    assert [fold["test_sites"] for fold in meta["ChosenPerFold"]] == list(
        out.cv.folds["test_sites"])
    assert meta["Connectivity"].startswith("fnc")
    path = tmp_path / "dx.skops"
    save_model(out.final_model, path, feature_names=out.feature_names, target="diagnosis",
               X=out.X, y=out.target.y, confounds=out.confounds,
               confound_categories=out.confound_categories)
    model, meta = load_model(path)
    pred = predict_table(model, meta, feats, participants)
    assert (pred.loc[out.target.participant_ids, "prediction"] == out.target.y).mean() > 0.9


def test_site_column_error(sim):
    _, feats, participants = sim
    with pytest.raises(ValueError, match="site column 'scanner' is not a column of "
                                         "participants.tsv"):
        classify_target(feats, participants, "diagnosis", site_column="scanner")
    with pytest.raises(ValueError, match="cannot be a covariate protected"):
        classify_target(feats, participants, "diagnosis", protect=("diagnosis",))


def test_without_site_column_stratified_folds_and_untested_chance(sim, caplog):
    _, feats, participants = sim
    no_site = participants.drop(columns="site")
    with pytest.raises(ValueError, match="--harmonize combat needs sites"):
        classify_target(feats, no_site, "diagnosis", harmonize="combat")
    with caplog.at_level("WARNING", logger="msica.classify"):
        out = classify_target(feats, no_site, "diagnosis", confounds=(), k_grid=(3,),
                              n_splits=3, inner_cv=2, n_bootstrap=0, random_state=0)
    assert out.validation.startswith("stratified 3-fold") and out.sites is None
    settings = out.final_model.settings_  # the "auto" defaults, decided without sites
    assert (settings["harmonize"], settings["inner_split"]) == ("none", "stratified")
    assert out.cv.predictions["group"].eq("all").all() and len(out.cv.folds) == 3
    assert "chance has not been tested" in caplog.text
    table = metrics_table(out)
    assert np.isnan(table.loc["permutation_p_value", "estimate"])
    assert table.loc["permutation_p_value", "note"].startswith("chance has not been tested")
    meta = describe_outcome(out, kinds=None, harmonize="auto", n_permutations=0,
                            random_state=0)
    assert meta["SiteColumn"] is None and not meta["ChanceTested"]
    assert meta["PermutationPValue"] is None


def test_participants_without_features_are_reported_and_left_out(sim, caplog):
    _, feats, participants = sim
    with caplog.at_level("WARNING", logger="msica.classify"):
        out = classify_target(feats.iloc[3:], participants, "diagnosis", confounds=(),
                              k_grid=(3,), n_splits=3, inner_cv=2, n_bootstrap=0,
                              baseline=False, random_state=0)
    missing = list(feats.index[:3])
    assert out.dropped == missing and out.baseline is None
    assert "3 participant(s) of participants.tsv have no features" in caplog.text
    assert all(pid in caplog.text for pid in missing)
    assert len(out.target.y) == len(feats) - 3
    preds = out.cv.predictions  # each out-of-fold row names its participant
    assert sorted(preds["participant_id"]) == sorted(feats.index[3:])
    assert (preds["y_true"].to_numpy() == out.target.y.loc[preds["participant_id"]].to_numpy()).all()
    from pipeline.exceptions import InputDataError

    with pytest.raises(InputDataError, match="every class needs at least 2"):
        classify_target(feats.iloc[:3], participants, "diagnosis")
