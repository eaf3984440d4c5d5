"""One call per target: nested CV beside a plain baseline, permutation test, biomarkers, final model.

:func:`classify_target` is what the group-level workflow calls for each target
(``diagnosis``, ``medication``, ``response``...): it derives the labels where
the target is defined, leaves out (and reports) participants without
features, puts the protected covariates and confounds in front of the
features, runs the site-aware nested cross-validation of msica's classifier
and, on the same outer splits, of a plain baseline (correlation, standardized
L2 logistic regression), the permutation test, builds the biomarker report and
refits the final model on every participant.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed
from pipeline.classify.biomarkers import biomarker_report
from pipeline.classify.confounds import encode_confounds
from pipeline.classify.connectivity import ConnectivityFeatures, node_labels_of
from pipeline.classify.search import (
    AS_GIVEN,
    AUTO_SITE_SPLIT_MIN_SITES,
    CLASSIFIER_DEFAULTS,
    INNER_SPLITS,
    FastSearchClassifier,
)
from pipeline.classify.targets import Target, derive_target, drop_without_features
from pipeline.classify.validation import (
    NestedCVResult,
    PermutationResult,
    nested_cross_validate,
    permutation_test,
)

__all__ = ["BASELINE_DESCRIPTION", "ClassificationOutcome", "Design", "classify_target",
           "describe_outcome", "design_matrix", "metrics_table", "resolve_site_column",
           "site_metrics_table"]

LOGGER = logging.getLogger("msica.classify")

#: The plain baseline every classification is compared with, as the sidecars state it.
BASELINE_DESCRIPTION = ("correlation features, standardized L2 logistic regression (C by the "
                        "same inner folds), same outer folds")
#: Columns of the per-fold choices recorded in the sidecar (those a fold table has).
FOLD_CHOICES = ("kind", "model", "k", "C", "l1_ratio", "members", "harmonize", "inner_split",
                "inner_repeats", "choice", "calibration", "combine", "split_seed", "model_seed")

#: Note carried by results whose chance level was not tested.
NO_PERMUTATION_NOTE = ("chance has not been tested: no label permutations were run "
                       "(--n-permutations 0); the metrics alone do not show that the "
                       "classifier beats chance")


@dataclass
class ClassificationOutcome:
    """Everything :func:`classify_target` produced for one target.

    Attributes
    ----------
    target : Target
    cv : NestedCVResult
        msica's classifier.
    baseline : NestedCVResult or None
        The plain baseline on the same outer splits.
    permutation : PermutationResult or None
    biomarkers : pandas.DataFrame
        With a ``kind`` column (the connectivity kind the edge comes from).
    final_model : FastSearchClassifier
        Refitted on all participants of the target.
    feature_names : list of str
        Input feature columns, in the model's order (after the covariates).
    confounds, protect : tuple of str
        Columns regressed out / protected by harmonization.
    confound_categories : dict
    X : ndarray of shape (n_participants, n_covariates + n_features)
        Design the final model was fitted on (for :func:`save_model`).
    sites : ndarray or None
        Site of each row of ``X``.
    validation : str
        How the outer folds were made (shown in the report and sidecar).
    dropped : list of str
        Participants of the target left out for lack of features.
    site_column : str or None
        The participants column the sites came from (None without sites).
    """

    target: Target
    cv: NestedCVResult
    baseline: NestedCVResult | None
    permutation: PermutationResult | None
    biomarkers: pd.DataFrame
    final_model: FastSearchClassifier
    feature_names: list
    confounds: tuple
    protect: tuple
    confound_categories: dict
    X: np.ndarray
    sites: np.ndarray | None
    validation: str
    dropped: list = field(default_factory=list)
    site_column: str | None = None


class Design(NamedTuple):
    """Design matrix ``[protected covariates | confounds | features]`` and its layout."""

    X: np.ndarray
    categories: dict
    n_protect: int
    n_confounds: int


def design_matrix(features: pd.DataFrame, participants: pd.DataFrame, confounds=(), *,
                  protect=(), categories=None) -> Design:
    """``[protect | confounds | features]`` as one float matrix, rows in ``features`` order.

    Parameters
    ----------
    features : pandas.DataFrame
        Indexed by participant_id.
    participants : pandas.DataFrame
        participant_id column or index.
    confounds, protect : sequence of str
        Columns regressed out, and covariates kept by harmonization
        (categorical ones one-hot encoded).
    categories : dict or None
        Categories learned earlier (see :func:`encode_confounds`).

    Returns
    -------
    Design
    """
    table = participants.set_index("participant_id") if "participant_id" in \
        participants.columns else participants
    rows = table.loc[features.index]
    kept, categories = encode_confounds(rows, protect, categories=categories)
    regressed, categories = encode_confounds(rows, confounds, categories=categories)
    X = np.hstack([kept.to_numpy(dtype=np.float64), regressed.to_numpy(dtype=np.float64),
                   features.to_numpy(dtype=np.float64)])
    return Design(X, categories, kept.shape[1], regressed.shape[1])


def resolve_site_column(participants: pd.DataFrame, site_column: str | None = "auto"):
    """The site column to use: ``"auto"`` is ``"site"`` when present, else none.

    Raises
    ------
    ValueError
        If an explicitly named column is missing.
    """
    columns = list(participants.columns)
    if site_column == "auto":
        return "site" if "site" in columns else None
    if site_column is not None and site_column not in columns:
        raise ValueError(
            f"site column {site_column!r} is not a column of participants.tsv (columns: "
            f"{columns}); name an existing column with --site-column, or drop the option to "
            "use 'site' when present (stratified folds otherwise)."
        )
    return site_column


def _baseline(kinds, inner_cv, inner_split, random_state):
    """Correlation features, standardized L2 logistic regression, C by the same inner folds.

    No harmonization, no feature screen, no calibration, the best inner score: the plain
    baseline.
    """
    return FastSearchClassifier(models=("logistic_l2",), k_grid=("all",), inner_cv=inner_cv,
                                inner_split=inner_split, harmonize="none", calibration="none",
                                choice="best",
                                kinds=None if kinds is None else ("correlation",),
                                random_state=random_state)


def _biomarkers(feats, cv, y, kinds, pos_label, label_table):
    """Biomarker report of every kind the folds used, one ``kind`` column."""
    reports = []
    used = sorted({kind for sel in cv.selected for kind in sel})
    for kind in used:
        selected = [sel.get(kind, []) for sel in cv.selected]
        if kind == AS_GIVEN or kinds is None:
            names, values = list(feats.columns), feats.to_numpy()
        else:
            est = ConnectivityFeatures(kind=kind).fit(feats.to_numpy())
            names = list(est.get_feature_names_out(node_labels_of(feats.columns)))
            values = est.transform(feats.to_numpy())
        report = biomarker_report(names, selected, values, y, pos_label=pos_label,
                                  label_table=label_table)
        if not report.empty:
            reports.append(report.assign(kind=kind))
    if not reports:
        return pd.DataFrame()
    report = pd.concat(reports, ignore_index=True)
    return report.sort_values("selection_frequency", ascending=False, kind="stable") \
        .reset_index(drop=True)


@fill_doc
def classify_target(
    features: pd.DataFrame,
    participants: pd.DataFrame,
    target: str,
    *,
    confounds=("age", "sex", "mean_fd"),
    protect=(),
    site_column: str | None = "auto",
    kinds=None,
    harmonize: str = CLASSIFIER_DEFAULTS["harmonize"],
    combine: str = CLASSIFIER_DEFAULTS["combine"],
    calibration: str = CLASSIFIER_DEFAULTS["calibration"],
    models=CLASSIFIER_DEFAULTS["models"],
    k_grid=CLASSIFIER_DEFAULTS["k_grid"],
    param_grids: dict | None = None,
    n_splits: int = 5,
    n_repeats: int = 1,
    inner_cv: int = 5,
    inner_split: str = CLASSIFIER_DEFAULTS["inner_split"],
    n_permutations: int = 0,
    n_bootstrap: int = 1000,
    baseline: bool = True,
    pos_label=None,
    label_table: pd.DataFrame | None = None,
    random_state=None,
    device="auto",
    n_jobs=None,
) -> ClassificationOutcome:
    """Classify one target from connectivity features with site-aware nested CV.

    Parameters
    ----------
    features : pandas.DataFrame of shape (n_participants, n_columns)
        Indexed by participant_id: edge columns ``"s4-N1__s10-N3"`` used as
        they are (``kinds=None``), or vectorised covariances
        (:func:`~pipeline.classify.connectivity.covariance_table`) from which
        each connectivity kind is computed inside the folds.
    participants : pandas.DataFrame
        participant_id, site, age, sex, diagnosis, ... (participants.tsv).
    target : str
        Column to predict (medication/response on patients only).
    confounds : sequence of str, default=("age", "sex", "mean_fd")
        Regressed out inside every training fold; categorical ones (e.g.
        ``"site"``) one-hot encoded.
    protect : sequence of str, default=()
        Covariates that harmonization keeps (never the target).
    site_column : str, "auto" or None, default="auto"
        Sites for the outer splits (never in both train and test), the inner
        splits, harmonization and the within-site permutations. "auto" uses
        ``"site"`` when present; without sites (or with one), stratified k-fold.
    kinds : sequence of str or None
        Connectivity kinds (see :class:`FastSearchClassifier`).
    harmonize, combine, calibration, models, k_grid, param_grids, inner_cv, inner_split
        See :class:`FastSearchClassifier`; the defaults are
        :data:`~pipeline.classify.search.CLASSIFIER_DEFAULTS` ("auto" settings are
        decided on each training set and recorded per fold in ``cv.folds`` and
        in ``final_model.settings_``).
    n_splits, n_repeats : int
        Outer folds (leave-one-site-out when there are at most ``n_splits``
        sites) and repeats.
    n_permutations : int, default=0
        Permutations of the whole nested CV (0 skips the test, with a logged warning).
    n_bootstrap : int, default=1000
    baseline : bool, default=True
        Also cross-validate the plain baseline on the same outer splits.
    pos_label : object or None
    label_table : pandas.DataFrame or None
        Network domains for the biomarker report.
    %(random_state)s
    %(device)s
    n_jobs : int or None, default=None
        Outer folds and permutations run in parallel with joblib.

    Returns
    -------
    ClassificationOutcome

    Raises
    ------
    ValueError
        If ``site_column`` names a missing column, a protected covariate is
        the target, or ComBat is asked for without sites.
    InputDataError
        If too few participants with features remain, or a fold is too small.
    """
    if target in protect:
        raise ValueError(f"the target {target!r} cannot be a covariate protected by "
                         "harmonization (its effect must not be kept out of the site model); "
                         "remove it from the protected covariates.")
    check_in_allowed("inner_split", inner_split, INNER_SPLITS)
    table = participants.set_index("participant_id") if "participant_id" in \
        participants.columns else participants
    site_column = resolve_site_column(table, site_column)
    tgt, feats, dropped = drop_without_features(derive_target(participants, target), features)
    design = design_matrix(feats, table, confounds, protect=protect)
    y = tgt.y.to_numpy()
    groups = None
    if site_column is not None:
        groups = table.loc[feats.index, site_column].astype(str).to_numpy()
        if len(np.unique(groups)) < 2:
            groups = None
    if groups is None:
        validation = (f"stratified {n_splits}-fold cross-validation (no site column"
                      + (f" with 2+ sites: {site_column!r} has one value" if site_column else "")
                      + "); nested, inner folds stratified")
        if harmonize == "combat":
            raise ValueError(f"--harmonize {harmonize} needs sites: participants.tsv has no "
                             "site column with 2 or more sites; add one (or name it with "
                             "--site-column) or use --harmonize none.")
    else:
        inner = {"sites": "leave training sites out",
                 "stratified": "stratified on site x class",
                 "auto": f"leave training sites out when they hold {AUTO_SITE_SPLIT_MIN_SITES}+ "
                         "sites, else stratified on site x class"}[inner_split]
        validation = (f"nested cross-validation on sites ({site_column!r}): outer folds "
                      f"{'leave one site out' if len(np.unique(groups)) <= n_splits else 'keep sites apart'}"
                      f", inner folds {inner}")
    estimator = FastSearchClassifier(models=models, k_grid=k_grid, param_grids=param_grids,
                                     n_confounds=design.n_confounds, n_protect=design.n_protect,
                                     inner_cv=inner_cv, inner_split=inner_split, kinds=kinds,
                                     harmonize=harmonize, combine=combine,
                                     calibration=calibration, random_state=random_state,
                                     device=device)
    seed = random_state if isinstance(random_state, (int, np.integer)) else None
    cv_kwargs = {"groups": groups, "n_splits": n_splits, "n_repeats": n_repeats,
                 "pos_label": pos_label}
    cv = nested_cross_validate(estimator, design.X, y, n_bootstrap=n_bootstrap,
                               random_state=seed, n_jobs=n_jobs, **cv_kwargs)
    base = None
    if baseline:
        n_cov = design.n_protect + design.n_confounds
        base = nested_cross_validate(_baseline(kinds, inner_cv, inner_split, random_state),
                                     design.X[:, n_cov:], y, n_bootstrap=n_bootstrap,
                                     random_state=seed, n_jobs=n_jobs, **cv_kwargs)
    for result in (cv, base):
        if result is not None:  # out-of-fold rows named by participant, not only by row
            result.predictions.insert(
                0, "participant_id", feats.index[result.predictions["sample"]].to_numpy())
    perm = None
    if n_permutations:
        perm = permutation_test(estimator, design.X, y, n_permutations=n_permutations,
                                random_state=seed, observed=cv if seed is not None else None,
                                n_jobs=n_jobs, **cv_kwargs)
    else:
        LOGGER.warning("target %s: %s.", target, NO_PERMUTATION_NOTE)
    report = _biomarkers(feats, cv, y, kinds, cv.pos_label, label_table)
    final = FastSearchClassifier(**estimator.get_params())
    final.fit(design.X, y, groups=groups)
    LOGGER.info("target %s: balanced accuracy %.3f, AUC %.3f%s", target, cv.balanced_accuracy,
                cv.roc_auc, "" if base is None else
                f" (baseline {base.balanced_accuracy:.3f}, {base.roc_auc:.3f})")
    return ClassificationOutcome(target=tgt, cv=cv, baseline=base, permutation=perm,
                                 biomarkers=report, final_model=final,
                                 feature_names=list(feats.columns), confounds=tuple(confounds),
                                 protect=tuple(protect),
                                 confound_categories=design.categories, X=design.X,
                                 sites=groups, validation=validation, dropped=dropped,
                                 site_column=site_column if groups is not None else None)


def metrics_table(outcome: ClassificationOutcome) -> pd.DataFrame:
    """The metrics TSV: msica and baseline with CIs, the permutation p-value and its note.

    Returns
    -------
    pandas.DataFrame
        Index ``metric`` (balanced_accuracy, roc_auc, ...,
        ``permutation_p_value``); columns ``estimate``, ``ci_low``, ``ci_high``,
        ``baseline_estimate``, ``baseline_ci_low``, ``baseline_ci_high`` and
        ``note`` (the permutation row says when chance has not been tested).
    """
    table = outcome.cv.metrics.copy()
    if outcome.baseline is not None:
        base = outcome.baseline.metrics.add_prefix("baseline_")
        table = table.join(base)
    perm = outcome.permutation
    row = pd.DataFrame(
        {"estimate": [np.nan if perm is None else perm.p_value],
         "note": [NO_PERMUTATION_NOTE if perm is None else
                  f"{len(perm.null)} permutations of the whole nested CV "
                  f"({perm.metric}, labels permuted within sites)"]},
        index=pd.Index(["permutation_p_value"], name="metric"))
    table = pd.concat([table, row])
    table.index.name = "metric"
    return table


def site_metrics_table(outcome: ClassificationOutcome) -> pd.DataFrame:
    """The per-site metrics TSV: msica's with CIs, the baseline's beside (``baseline_*``).

    Returns
    -------
    pandas.DataFrame
        One row per test site (``site``, ``n`` and the metrics).
    """
    per_site = outcome.cv.per_site
    if outcome.baseline is not None:
        base = outcome.baseline.per_site.drop(columns="n").set_index("site")
        per_site = per_site.join(base.add_prefix("baseline_"), on="site")
    return per_site


def describe_outcome(outcome: ClassificationOutcome, *, kinds: Sequence[str] | None,
                     harmonize: str, n_permutations: int, random_state: int) -> dict[str, Any]:
    """The sidecar of a classification: the analysis as it ran, and its headline results.

    Parameters
    ----------
    outcome : ClassificationOutcome
        From :func:`classify_target`.
    kinds, harmonize, n_permutations, random_state
        As given to :func:`classify_target` (``kinds=None``: the participant level's FNC
        edges).

    Returns
    -------
    dict
        BIDS-style keys (``Target``, ``Validation``, ``BalancedAccuracy``, ...); values
        may be NumPy scalars, to be made JSON by the caller.
    """
    from pipeline.classify.connectivity import CONNECTIVITY_KINDS
    from pipeline.classify.harmonize import describe_harmonize

    perm = outcome.permutation
    folds = outcome.cv.folds
    choices = [c for c in folds.columns if c in FOLD_CHOICES]
    return {
        "Target": outcome.target.name,
        "Classes": [str(c) for c in outcome.target.classes],
        "NumberOfParticipants": int(len(outcome.target.y)),
        "ParticipantsWithoutFeatures": outcome.dropped,
        "Confounds": list(outcome.confounds),
        "SiteColumn": outcome.site_column,
        "Validation": outcome.validation,
        "Connectivity": "fnc (participant-level multi-scale FNC edges)" if kinds is None
        else {k: CONNECTIVITY_KINDS[k].description for k in kinds},
        "Harmonization": describe_harmonize(harmonize),
        "HarmonizationOption": harmonize,
        "ProtectedCovariates": list(outcome.protect),
        "ModelMenu": list(CLASSIFIER_DEFAULTS["models"]),
        "ClassifierSettings": {**{k: list(v) if isinstance(v, tuple) else v
                                  for k, v in CLASSIFIER_DEFAULTS.items()},
                               "harmonize": harmonize},
        "FinalModelSettings": outcome.final_model.settings_,
        "ChosenPerFold": folds[["test_sites", *choices]].to_dict(orient="records"),
        "BalancedAccuracy": outcome.cv.balanced_accuracy,
        "ROCAUC": outcome.cv.roc_auc,
        "Baseline": BASELINE_DESCRIPTION,
        "BaselineBalancedAccuracy": None if outcome.baseline is None
        else outcome.baseline.balanced_accuracy,
        "BaselineROCAUC": None if outcome.baseline is None else outcome.baseline.roc_auc,
        "NumberOfPermutations": n_permutations,
        "PermutationPValue": None if perm is None else float(perm.p_value),
        "ChanceTested": perm is not None,
        "RandomSeed": random_state,
    }
