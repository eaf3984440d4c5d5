"""Nested, site-aware cross-validation, metrics with bootstrap CIs and permutation tests.

The outer loop estimates performance on participants (or sites) never seen in
training; everything learned (confound weights, scaling, feature ranking, the
number of features, the model and its hyperparameters) is learned inside each
outer training set by the estimator's own inner cross-validation.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.calibration import calibration_curve
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import (
    LeaveOneGroupOut,
    RepeatedStratifiedKFold,
    StratifiedGroupKFold,
)

from pipeline._validation import check_int, check_random_state, derive_seeds
from pipeline.classify.search import positive_scores
from pipeline.exceptions import InputDataError

__all__ = [
    "NestedCVResult",
    "PermutationResult",
    "binary_metrics",
    "bootstrap_metrics",
    "check_fold_sizes",
    "check_groups_disjoint",
    "nested_cross_validate",
    "outer_splits",
    "permutation_test",
]

LOGGER = logging.getLogger("msica.classify")


def check_groups_disjoint(train, test, groups) -> None:
    """Raise ``ValueError`` if a group (site) has rows in both ``train`` and ``test``."""
    if groups is None:
        return
    groups = np.asarray(groups)
    shared = np.intersect1d(groups[train], groups[test])
    if len(shared):
        raise ValueError(
            f"site-aware split broken: sites {shared.tolist()} are in both the training and "
            "the test set. Use a group splitter (LeaveOneGroupOut, StratifiedGroupKFold) or "
            "pass groups=None."
        )


def outer_splits(y, groups=None, *, n_splits=5, n_repeats=1, random_state=None,
                 cv=None) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Outer train/test splits as ``(repeat, train, test)``, keeping sites apart.

    With ``groups``: :class:`~sklearn.model_selection.LeaveOneGroupOut` when there
    are at most ``n_splits`` sites, else a shuffled
    :class:`~sklearn.model_selection.StratifiedGroupKFold` per repeat. Without:
    :class:`~sklearn.model_selection.RepeatedStratifiedKFold`. A custom splitter
    ``cv`` is used as given (one repeat), and checked to keep sites apart.

    Raises
    ------
    ValueError
        If a split puts one site in both train and test, or fewer than 2 sites.
    """
    y = np.asarray(y)
    seeds = derive_seeds(random_state, n_repeats)
    placeholder = np.zeros((len(y), 1))
    splits = []
    if cv is not None:
        splits = [(0, tr, te) for tr, te in cv.split(placeholder, y, groups)]
    elif groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise ValueError(f"'groups' must hold at least 2 sites for site-aware CV. Got "
                             f"{n_groups}. Pass groups=None to split participants instead.")
        if n_groups <= n_splits:
            splits = [(0, tr, te) for tr, te in LeaveOneGroupOut().split(placeholder, y, groups)]
        else:
            for r, seed in enumerate(seeds):
                sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=int(seed))
                splits += [(r, tr, te) for tr, te in sgkf.split(placeholder, y, groups)]
    else:
        rskf = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats,
                                       random_state=int(seeds[0]))
        splits = [(i // n_splits, tr, te) for i, (tr, te) in enumerate(rskf.split(placeholder, y))]
    for _, train, test in splits:
        check_groups_disjoint(train, test, groups)
    check_fold_sizes(y, groups, splits)
    return splits


def check_fold_sizes(y, groups, splits, *, min_per_class: int = 2,
                     min_per_site: int = 0) -> None:
    """Raise ``InputDataError`` when a training fold is too small, saying what it needs.

    Every class needs ``min_per_class`` training participants in each fold
    (for the inner model selection), and with harmonization every site needs
    ``min_per_site`` participants. The message names the fold, its test sites,
    the counts per class and site, and the numbers needed.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    site_arr = None if groups is None else np.asarray(groups).astype(str)
    for index, (_, train, test) in enumerate(splits):
        counts = {str(c): int(np.sum(y[train] == c)) for c in classes}
        sites = [] if site_arr is None else sorted(map(str, set(site_arr[test])))
        held_out = f" (test sites {sites})" if sites else ""
        table = "" if site_arr is None else " Participants per site and class: " + str(
            pd.crosstab(site_arr, y).to_dict(orient="index")) + "."
        if min(counts.values()) < min_per_class:
            raise InputDataError(
                f"Outer fold {index}{held_out} leaves {counts} training participants per class; "
                f"every class needs at least {min_per_class} in each training fold for the inner "
                f"model selection.{table} Add participants, drop this target, or use fewer "
                "folds."
            )
        if min_per_site and site_arr is not None:
            sizes = pd.Series(site_arr).value_counts()
            small = {s: int(n) for s, n in sizes.items() if n < min_per_site}
            if small:
                raise InputDataError(
                    f"Harmonization needs at least {min_per_site} participants per site; "
                    f"{small} have fewer.{table} Merge or drop those sites, or run with "
                    "--harmonize none."
                )


def binary_metrics(y_true, y_pred, scores, pos_label) -> dict:
    """Balanced accuracy, ROC AUC, sensitivity and specificity for one positive class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    pos, pred_pos = y_true == pos_label, y_pred == pos_label
    tp, fn = np.sum(pos & pred_pos), np.sum(pos & ~pred_pos)
    tn, fp = np.sum(~pos & ~pred_pos), np.sum(~pos & pred_pos)
    sens = tp / (tp + fn) if tp + fn else np.nan
    spec = tn / (tn + fp) if tn + fp else np.nan
    auc = roc_auc_score(pos, scores) if 0 < pos.sum() < len(pos) and scores is not None else np.nan
    return {"balanced_accuracy": np.nanmean([sens, spec]), "roc_auc": auc,
            "sensitivity": sens, "specificity": spec}


def _metrics(y_true, y_pred, scores, classes, pos_label):
    if len(classes) == 2:
        return binary_metrics(y_true, y_pred, scores, pos_label)
    auc = np.nan
    if scores is not None and len(np.unique(y_true)) == len(classes):
        auc = roc_auc_score(y_true, scores, multi_class="ovr", labels=classes)
    return {"balanced_accuracy": balanced_accuracy_score(y_true, y_pred), "roc_auc": auc}


def bootstrap_metrics(y_true, y_pred, scores, classes, pos_label, *, n_bootstrap=1000,
                      ci=0.95, random_state=None) -> pd.DataFrame:
    """Point estimates and percentile bootstrap CIs (resampling participants).

    Returns
    -------
    pandas.DataFrame
        Index: metric; columns ``estimate``, ``ci_low``, ``ci_high``.
    """
    point = _metrics(y_true, y_pred, scores, classes, pos_label)
    rng = check_random_state(random_state)
    n = len(y_true)
    draws = {m: [] for m in point}
    for _ in range(n_bootstrap):
        idx = rng.randint(n, size=n)
        if len(np.unique(y_true[idx])) < len(classes):
            continue
        s = None if scores is None else scores[idx]
        for m, v in _metrics(y_true[idx], y_pred[idx], s, classes, pos_label).items():
            draws[m].append(v)
    alpha = (1 - ci) / 2
    rows = {}
    for m in point:
        defined = np.asarray(draws[m], dtype=np.float64)
        defined = defined[np.isfinite(defined)]  # e.g. no AUC without class scores: no CI
        low, high = (np.quantile(defined, [alpha, 1 - alpha]) if defined.size
                     else (np.nan, np.nan))
        rows[m] = {"estimate": point[m], "ci_low": low, "ci_high": high}
    return pd.DataFrame(rows).T.rename_axis("metric")


@dataclass
class NestedCVResult:
    """Outcome of :func:`nested_cross_validate`.

    Attributes
    ----------
    predictions : pandas.DataFrame
        One row per (repeat, test participant): ``sample``, ``repeat``, ``fold``,
        ``group``, ``y_true``, ``y_pred``, ``score`` (P(pos_label) for binary);
        :func:`~pipeline.classify.analysis.classify_target` adds ``participant_id``.
    folds : pandas.DataFrame
        Per fold: test sites, sizes, metrics, chosen model/k/params and the estimator's
        ``settings_`` ("auto" settings as decided, seeds) when it has them.
    metrics : pandas.DataFrame
        Overall metrics with bootstrap CIs (see :func:`bootstrap_metrics`).
    per_site : pandas.DataFrame
        Metrics of the pooled predictions of each site.
    selected : list of ndarray
        Selected feature indices (feature columns, confounds excluded) per fold.
    calibration : pandas.DataFrame or None
        ``prob_pred`` / ``prob_true`` of the binary calibration curve.
    classes : ndarray
    pos_label : object
    """

    predictions: pd.DataFrame
    folds: pd.DataFrame
    metrics: pd.DataFrame
    per_site: pd.DataFrame
    selected: list
    calibration: pd.DataFrame | None
    classes: np.ndarray
    pos_label: object
    estimators: list = field(default_factory=list)

    @property
    def balanced_accuracy(self) -> float:
        """Overall balanced accuracy of the pooled out-of-fold predictions."""
        return float(self.metrics.loc["balanced_accuracy", "estimate"])

    @property
    def roc_auc(self) -> float:
        """Overall ROC AUC of the pooled out-of-fold predictions."""
        return float(self.metrics.loc["roc_auc", "estimate"])


def _align_proba(proba, est_classes, classes):
    out = np.zeros(len(classes))
    out[np.searchsorted(classes, est_classes)] = proba
    return out


def _accepts_groups(method) -> bool:
    return "groups" in inspect.signature(method).parameters


def _run_fold(estimator, X, y, group_arr, has_groups, fold, repeat, train, test, seed, classes,
              pos_label):
    """Fit one outer fold on its training rows; predict its test rows (sites, never labels)."""
    est = clone(estimator)
    if "random_state" in est.get_params():
        est.set_params(random_state=int(seed) + fold)
    if has_groups and _accepts_groups(est.fit):
        est.fit(X[train], y[train], groups=group_arr[train])
    else:
        est.fit(X[train], y[train])
    site_kwargs = {"groups": group_arr[test]} if has_groups and _accepts_groups(est.predict) \
        else {}
    pred = est.predict(X[test], **site_kwargs)
    if hasattr(est, "predict_proba"):
        proba = est.predict_proba(X[test], **site_kwargs)
        scores = proba[:, 1] if len(classes) == 2 else proba
    else:
        scores = positive_scores(est, X[test], est.classes_)
    if len(classes) == 2:
        pos_idx = list(est.classes_).index(pos_label)
        scores = scores if pos_idx == 1 else (1 - scores if hasattr(est, "predict_proba")
                                              else -scores)
    info = {"fold": fold, "repeat": repeat, "n_train": len(train), "n_test": len(test),
            "test_sites": ",".join(map(str, np.unique(group_arr[test])))}
    info.update(_metrics(y[test], pred, scores, classes, pos_label)
                if len(classes) == 2 else
                {"balanced_accuracy": balanced_accuracy_score(y[test], pred)})
    info.update(getattr(est, "best_params_", {}))
    info.update(getattr(est, "settings_", {}))
    selected = getattr(est, "selected_features_", {})
    rows = []
    for i, t in enumerate(test):
        row = {"sample": t, "repeat": repeat, "fold": fold, "group": group_arr[t],
               "y_true": y[t], "y_pred": pred[i],
               "score": scores[i] if len(classes) == 2 else np.nan}
        if len(classes) > 2:
            row["proba"] = _align_proba(scores[i], est.classes_, classes)
        rows.append(row)
    return info, selected if isinstance(selected, dict) else {"features": selected}, rows, est


def nested_cross_validate(estimator, X, y, *, groups=None, n_splits=5, n_repeats=1, cv=None,
                          pos_label=None, n_bootstrap=1000, calibration_bins=5,
                          random_state=None, return_estimators=False,
                          n_jobs=None) -> NestedCVResult:
    """Outer cross-validation of an estimator that does its own inner selection.

    Parameters
    ----------
    estimator : classifier
        Typically :class:`~pipeline.classify.search.FastSearchClassifier`; cloned
        per fold and fitted with ``groups`` of the training rows when it accepts
        them. Its ``predict`` gets the test rows' sites when it accepts
        ``groups`` (for harmonization; never their labels).
    X : array-like of shape (n_samples, n_columns)
    y : array-like of shape (n_samples,)
    groups : array-like of shape (n_samples,) or None
        Sites. Given, no site is ever in both the training and test set of a fold.
    n_splits, n_repeats : int
        Outer folds and repeats (see :func:`outer_splits`).
    cv : splitter or None
        Custom outer splitter (checked to keep sites apart).
    pos_label : object or None
        Positive class for sensitivity, AUC and calibration; default the last
        sorted class.
    n_bootstrap : int, default=1000
        Bootstrap resamples of the participants for the CIs (overall and per site).
    calibration_bins : int, default=5
    random_state : int, RandomState or None
    return_estimators : bool, default=False
    n_jobs : int or None, default=None
        Outer folds fitted in parallel with joblib (None: one process).

    Returns
    -------
    NestedCVResult
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    classes = np.unique(y)
    pos_label = classes[-1] if pos_label is None else pos_label
    if pos_label not in classes:
        raise ValueError(f"'pos_label' must be one of the classes {classes.tolist()}. "
                         f"Got {pos_label!r}.")
    rng = check_random_state(random_state)
    split_seed, fit_seed, boot_seed = rng.randint(2**31 - 1, size=3)
    splits = outer_splits(y, groups, n_splits=n_splits, n_repeats=n_repeats,
                          random_state=split_seed, cv=cv)
    group_arr = np.asarray(groups) if groups is not None else np.full(len(y), "all")
    outs = Parallel(n_jobs=n_jobs)(
        delayed(_run_fold)(estimator, X, y, group_arr, groups is not None, fold, repeat, train,
                           test, fit_seed, classes, pos_label)
        for fold, (repeat, train, test) in enumerate(splits))
    folds, selected, rows, estimators = [], [], [], []
    for info, sel, fold_rows, est in outs:
        folds.append(info)
        selected.append(sel)
        rows += fold_rows
        if return_estimators:
            estimators.append(est)
        LOGGER.info("outer fold %d (test %s): balanced accuracy %.3f", info["fold"],
                    info["test_sites"], info["balanced_accuracy"])
    preds = pd.DataFrame(rows)
    yt, yp = preds["y_true"].to_numpy(), preds["y_pred"].to_numpy()
    sc = preds["score"].to_numpy() if len(classes) == 2 else (
        np.vstack(preds["proba"].to_numpy()) if "proba" in preds else None)
    metrics = bootstrap_metrics(yt, yp, sc, classes, pos_label, n_bootstrap=n_bootstrap,
                                random_state=boot_seed)
    site_rows = []
    for site, part in preds.groupby("group", sort=True):
        s = part["score"].to_numpy() if len(classes) == 2 else None
        boot = bootstrap_metrics(part["y_true"].to_numpy(), part["y_pred"].to_numpy(), s,
                                 classes, pos_label, n_bootstrap=n_bootstrap,
                                 random_state=boot_seed)
        row = {"site": site, "n": len(part)}
        for metric in boot.index:
            row[metric] = boot.loc[metric, "estimate"]
            row[f"{metric}_ci_low"] = boot.loc[metric, "ci_low"]
            row[f"{metric}_ci_high"] = boot.loc[metric, "ci_high"]
        site_rows.append(row)
    calibration = None
    if len(classes) == 2 and np.all((sc >= 0) & (sc <= 1)):
        prob_true, prob_pred = calibration_curve(yt == pos_label, sc, n_bins=calibration_bins)
        calibration = pd.DataFrame({"prob_pred": prob_pred, "prob_true": prob_true})
    return NestedCVResult(predictions=preds, folds=pd.DataFrame(folds), metrics=metrics,
                          per_site=pd.DataFrame(site_rows), selected=selected,
                          calibration=calibration, classes=classes, pos_label=pos_label,
                          estimators=estimators)


@dataclass
class PermutationResult:
    """Outcome of :func:`permutation_test`.

    Attributes
    ----------
    observed : float
        Metric of the nested CV on the true labels.
    null : ndarray of shape (n_permutations,)
        Metric of the same nested CV on permuted labels.
    p_value : float
        ``(1 + #(null >= observed)) / (1 + n_permutations)``.
    metric : str
    """

    observed: float
    null: np.ndarray
    p_value: float
    metric: str


def permute_within_groups(y, groups, rng) -> np.ndarray:
    """Shuffle ``y`` within each group (site), keeping per-site class counts."""
    y = np.asarray(y).copy()
    if groups is None:
        return y[rng.permutation(len(y))]
    groups = np.asarray(groups)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        y[idx] = y[idx[rng.permutation(len(idx))]]
    return y


def _permuted_score(estimator, X, y_perm, groups, cv_seed, metric, cv_kwargs) -> float:
    res = nested_cross_validate(estimator, X, y_perm, groups=groups, random_state=cv_seed,
                                **cv_kwargs)
    return float(res.metrics.loc[metric, "estimate"])


def permutation_test(estimator, X, y, *, groups=None, n_permutations=100,
                     metric="balanced_accuracy", random_state=None, observed=None,
                     n_jobs=None, **cv_kwargs) -> PermutationResult:
    """Permutation test of the whole nested cross-validation.

    Labels are permuted (within sites when ``groups`` is given) and the complete
    nested procedure (inner selection included) is rerun on each permutation,
    with the same outer splits seed as the unpermuted run.

    Parameters
    ----------
    estimator, X, y, groups
        As in :func:`nested_cross_validate`.
    n_permutations : int, default=100
    metric : {"balanced_accuracy", "roc_auc"}
    random_state : int, RandomState or None
        An int is used as the ``random_state`` of every nested CV (same splits
        for the true and the permuted labels) and seeds the permutations.
    observed : NestedCVResult or None
        Result on the true labels, if already computed with
        ``random_state`` equal to this int (saves one nested CV).
    n_jobs : int or None, default=None
        Permutations run in parallel with joblib (each one's nested CV in one
        process); the cost is linear in ``n_permutations``.
    **cv_kwargs
        Passed to :func:`nested_cross_validate` (``n_splits``, ``pos_label``...).

    Returns
    -------
    PermutationResult
    """
    check_int("n_permutations", n_permutations, 1)
    if metric not in ("balanced_accuracy", "roc_auc"):
        raise ValueError(f"'metric' must be 'balanced_accuracy' or 'roc_auc'. Got {metric!r}.")
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        cv_seed, perm_seed = int(random_state), int(derive_seeds(random_state, 1)[0])
    else:
        cv_seed, perm_seed = check_random_state(random_state).randint(2**31 - 1, size=2)
    cv_kwargs = {**cv_kwargs, "n_bootstrap": 0}
    if observed is None:
        observed = nested_cross_validate(estimator, X, y, groups=groups, random_state=cv_seed,
                                         n_jobs=n_jobs, **cv_kwargs)
    obs = float(observed.metrics.loc[metric, "estimate"])
    rng = check_random_state(perm_seed)
    permuted = [permute_within_groups(y, groups, rng) for _ in range(n_permutations)]
    null = np.asarray(Parallel(n_jobs=n_jobs)(
        delayed(_permuted_score)(estimator, X, y_perm, groups, cv_seed, metric, cv_kwargs)
        for y_perm in permuted), dtype=np.float64)
    p = (1 + np.sum(null >= obs - 1e-12)) / (1 + n_permutations)
    return PermutationResult(observed=obs, null=null, p_value=float(p), metric=metric)
