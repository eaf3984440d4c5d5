"""One call per target: nested CV, permutation test, biomarkers and the final model.

:func:`classify_target` is what the group-level workflow calls for each target
(``diagnosis``, ``medication``, ``response``...): it derives the labels where
the target is defined, puts the confounds in front of the features, runs the
site-aware nested cross-validation and the permutation test, builds the
biomarker report, and refits the final model on every participant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline._docs import fill_doc
from pipeline.classify.biomarkers import biomarker_report
from pipeline.classify.confounds import encode_confounds
from pipeline.classify.search import FastSearchClassifier
from pipeline.classify.targets import Target, align_features, derive_target
from pipeline.classify.validation import (
    NestedCVResult,
    PermutationResult,
    nested_cross_validate,
    permutation_test,
)

__all__ = ["ClassificationOutcome", "classify_target", "design_matrix"]

LOGGER = logging.getLogger("msica.classify")


@dataclass
class ClassificationOutcome:
    """Everything :func:`classify_target` produced for one target.

    Attributes
    ----------
    target : Target
    cv : NestedCVResult
    permutation : PermutationResult or None
    biomarkers : pandas.DataFrame
    final_model : FastSearchClassifier
        Refitted on all participants of the target.
    feature_names : list of str
    confounds : tuple of str
    confound_categories : dict
    X : ndarray of shape (n_participants, n_confounds + n_features)
        Design the final model was fitted on (for :func:`save_model`).
    """

    target: Target
    cv: NestedCVResult
    permutation: PermutationResult | None
    biomarkers: pd.DataFrame
    final_model: FastSearchClassifier
    feature_names: list
    confounds: tuple
    confound_categories: dict
    X: np.ndarray


def design_matrix(features: pd.DataFrame, participants: pd.DataFrame, confounds=(),
                  categories=None) -> tuple[np.ndarray, dict]:
    """``[confounds | features]`` as one float matrix, rows in ``features`` order.

    Returns
    -------
    X : ndarray of shape (n_participants, n_encoded_confounds + n_features)
    categories : dict
        Categories of categorical confounds.
    """
    table = participants.set_index("participant_id") if "participant_id" in \
        participants.columns else participants
    design, categories = encode_confounds(table.loc[features.index], confounds,
                                          categories=categories)
    X = np.hstack([design.to_numpy(dtype=np.float64), features.to_numpy(dtype=np.float64)])
    return X, categories


@fill_doc
def classify_target(
    features: pd.DataFrame,
    participants: pd.DataFrame,
    target: str,
    *,
    confounds=("age", "sex", "mean_fd"),
    site_column: str | None = "site",
    models=("logistic_l2",),
    k_grid=(0.01, 0.05, 0.2, "all"),
    param_grids: dict | None = None,
    n_splits: int = 5,
    n_repeats: int = 1,
    inner_cv: int = 5,
    n_permutations: int = 0,
    n_bootstrap: int = 1000,
    pos_label=None,
    label_table: pd.DataFrame | None = None,
    random_state=None,
    device="auto",
) -> ClassificationOutcome:
    """Classify one target from FNC features with site-aware nested CV.

    Parameters
    ----------
    features : pandas.DataFrame of shape (n_participants, n_features)
        Edge columns ``"s4-N1__s10-N3"`` indexed by participant_id.
    participants : pandas.DataFrame
        participant_id, site, age, sex, diagnosis, ... (participants.tsv).
    target : str
        Column to predict (medication/response on patients only).
    confounds : sequence of str, default=("age", "sex", "mean_fd")
        Regressed out inside every training fold; categorical ones (e.g.
        ``"site"``) one-hot encoded.
    site_column : str or None, default="site"
        Sites for the outer splits (never in both train and test) and for the
        within-site permutations; None splits participants.
    models, k_grid, param_grids, inner_cv
        See :class:`FastSearchClassifier`.
    n_splits, n_repeats : int
        Outer folds (leave-one-site-out when there are at most ``n_splits``
        sites) and repeats.
    n_permutations : int, default=0
        Permutations of the whole nested CV (0 skips the test).
    n_bootstrap : int, default=1000
    pos_label : object or None
    label_table : pandas.DataFrame or None
        Network domains for the biomarker report.
    %(random_state)s
    %(device)s

    Returns
    -------
    ClassificationOutcome
    """
    tgt = derive_target(participants, target)
    feats = align_features(features, tgt)
    table = participants.set_index("participant_id") if "participant_id" in \
        participants.columns else participants
    X, categories = design_matrix(feats, table, confounds)
    n_confounds = X.shape[1] - feats.shape[1]
    y = tgt.y.to_numpy()
    groups = None
    if site_column is not None:
        if site_column not in table.columns:
            raise ValueError(f"'site_column' {site_column!r} is not a column of participants "
                             f"{list(table.columns)}. Pass site_column=None to ignore sites.")
        groups = table.loc[feats.index, site_column].astype(str).to_numpy()
        if len(np.unique(groups)) < 2:
            groups = None
    estimator = FastSearchClassifier(models=models, k_grid=k_grid, param_grids=param_grids,
                                     n_confounds=n_confounds, inner_cv=inner_cv,
                                     random_state=random_state, device=device)
    seed = random_state if isinstance(random_state, (int, np.integer)) else None
    cv = nested_cross_validate(estimator, X, y, groups=groups, n_splits=n_splits,
                               n_repeats=n_repeats, pos_label=pos_label,
                               n_bootstrap=n_bootstrap, random_state=seed)
    perm = None
    if n_permutations:
        perm = permutation_test(estimator, X, y, groups=groups, n_permutations=n_permutations,
                                random_state=seed, observed=cv if seed is not None else None,
                                n_splits=n_splits, n_repeats=n_repeats, pos_label=pos_label)
    report = biomarker_report(list(feats.columns), cv.selected, feats.to_numpy(), y,
                              pos_label=cv.pos_label, label_table=label_table)
    final = FastSearchClassifier(**estimator.get_params())
    final.fit(X, y, groups=groups)
    LOGGER.info("target %s: balanced accuracy %.3f, AUC %.3f", target, cv.balanced_accuracy,
                cv.roc_auc)
    return ClassificationOutcome(target=tgt, cv=cv, permutation=perm, biomarkers=report,
                                 final_model=final, feature_names=list(feats.columns),
                                 confounds=tuple(confounds), confound_categories=categories,
                                 X=X)
