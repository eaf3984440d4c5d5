"""Connectivity kind, model, hyperparameter and feature-count selection by inner cross-validation.

:class:`FastSearchClassifier` is msica's classifier: per connectivity kind a
:class:`~pipeline.classify.preprocess.FoldPreprocessor` (kind, site
harmonization, confound regression, scaling), univariate ranking and a model,
with the kind, the number of features ``k``, the model and its hyperparameters
chosen by an inner cross-validation that leaves training sites out (so the
choice favours what transfers to a new site), and optionally a stacking of the
kinds. Without kinds or sites it gives the same choice as a
:class:`~sklearn.model_selection.GridSearchCV` over the equivalent pipeline,
but fits the preprocessing and the ranking once per inner fold and slices it
for every ``k`` (the expensive parts are not repeated for each grid point).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import (
    LeaveOneGroupOut,
    ParameterGrid,
    StratifiedGroupKFold,
    StratifiedKFold,
)
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed, check_int, check_random_state, derive_seeds
from pipeline.classify.connectivity import CONNECTIVITY_KINDS
from pipeline.classify.harmonize import resolve_harmonize
from pipeline.classify.models import MODEL_NAMES, default_param_grid, make_model
from pipeline.classify.preprocess import FoldPreprocessor
from pipeline.classify.selection import RankedSelector, resolve_k

__all__ = ["CLASSIFIER_DEFAULTS", "COMBINE", "INNER_SPLITS", "FastSearchClassifier",
           "inner_splits", "positive_scores", "resolve_inner_split"]

#: Name of the feature block when no connectivity kind is computed (features as given).
AS_GIVEN = "features"

LOGGER = logging.getLogger("msica.classify")


#: msica's classifier defaults, the one place they are set: :class:`FastSearchClassifier`,
#: :func:`~pipeline.classify.analysis.classify_target` and the group level's options follow
#: them. Measured on ABIDE CC200 leave-one-site-out against the plain baseline
#: (``benchmarks/abide.py``, docs/defaults.md): L2 logistic regression only (an SVM or
#: elastic-net menu did not help), every feature (no univariate screen), ComBat by the
#: "auto" rule, inner folds by the "auto" rule and several connectivity kinds averaged
#: ("mean") rather than stacked. The one-standard-error rule ("one_se") rather than the best
#: inner score: over seeds 0-4 it raised pooled balanced accuracy / AUC from 0.701 / 0.774
#: (mean; the choice of C swung between 0.001 and 1.0 with the seed) to 0.708 / 0.781 on
#: every seed; repeating the inner folds three times (``inner_repeats=3``) changed nothing
#: at 2.5 times the cost. Platt calibration of the final model is available but not
#: the default: it lowered pooled balanced accuracy / AUC from 0.696 / 0.773 to 0.640 / 0.702
#: (0.663 / 0.733 with class-balanced Platt), and the class-balanced models' own
#: probabilities were the better calibrated over the test sites (Brier 0.195 vs 0.224).
CLASSIFIER_DEFAULTS = {
    "models": ("logistic_l2",),
    "k_grid": ("all",),
    "harmonize": "auto",
    "inner_split": "auto",
    "inner_repeats": 1,
    "choice": "one_se",
    "calibration": "none",
    "combine": "mean",
}

#: Values of ``inner_split``: "sites" (inner folds leave training sites out), "stratified"
#: (folds stratified on site x class) or "auto" ("sites" when the training rows hold at least
#: ``AUTO_SITE_SPLIT_MIN_SITES`` sites, else "stratified").
INNER_SPLITS = ("auto", "sites", "stratified")
AUTO_SITE_SPLIT_MIN_SITES = 3

#: How several connectivity kinds are combined: "mean" (average of each kind's best model's
#: probabilities), "stack" (a logistic regression on their out-of-fold scores, kept when its
#: inner score is the best) or "select" (the single best kind).
COMBINE = ("mean", "stack", "select")

#: How the inner scores pick a candidate: the best mean score, or the one-standard-error rule.
CHOICES = ("best", "one_se")

#: Probability calibration of the final model (scikit-learn's CalibratedClassifierCV methods).
CALIBRATIONS = ("none", "sigmoid", "isotonic")


def resolve_inner_split(inner_split: str, groups=None) -> str:
    """The inner split to use on these training rows: "auto" decided by the number of sites.

    Returns
    -------
    {"sites", "stratified"}
        "sites" needs 2 or more sites (else "stratified"); "auto" is "sites" from
        :data:`AUTO_SITE_SPLIT_MIN_SITES` sites on.

    Examples
    --------
    >>> resolve_inner_split("auto", ["a", "b", "c"]), resolve_inner_split("auto", ["a", "b"])
    ('sites', 'stratified')
    """
    check_in_allowed("inner_split", inner_split, INNER_SPLITS)
    n_groups = 0 if groups is None else len(np.unique(np.asarray(groups).astype(str)))
    if inner_split == "auto":
        return "sites" if n_groups >= AUTO_SITE_SPLIT_MIN_SITES else "stratified"
    return "sites" if inner_split == "sites" and n_groups >= 2 else "stratified"


def inner_splits(n_splits: int, y, groups=None, random_state=None, *,
                 split: str = "sites") -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/validation splits of the inner model selection (each row validated once).

    ``split="sites"`` with 2 to ``n_splits`` distinct sites in ``groups``:
    :class:`~sklearn.model_selection.LeaveOneGroupOut` (each inner fold
    validates on a training site the inner model has not seen, as the outer
    test site will be); with more sites, a shuffled
    :class:`~sklearn.model_selection.StratifiedGroupKFold`. Otherwise
    (``"stratified"``, or fewer than 2 sites) a shuffled
    :class:`~sklearn.model_selection.StratifiedKFold` on site x class (on class
    alone without sites, or when a site x class cell is smaller than the
    number of folds), with ``n_splits`` lowered to the smallest class size
    when needed. See :func:`resolve_inner_split` for ``"auto"``.

    Returns
    -------
    list of (ndarray, ndarray)
    """
    split = resolve_inner_split(split, groups)
    seed = int(check_random_state(random_state).randint(2**31 - 1))
    y = np.asarray(y)
    placeholder = np.zeros((len(y), 1))
    if split == "sites":
        n_groups = len(np.unique(groups))
        splitter = LeaveOneGroupOut() if n_groups <= n_splits else StratifiedGroupKFold(
            n_splits=n_splits, shuffle=True, random_state=seed)
        return list(splitter.split(placeholder, y, groups))
    n_splits = max(2, min(n_splits, int(pd.Series(y).value_counts().min())))
    strata = y
    if groups is not None:
        cells = pd.Series(np.asarray(groups).astype(str)).str.cat(y.astype(str),
                                                                  sep="|").to_numpy()
        if pd.Series(cells).value_counts().min() >= n_splits:
            strata = cells
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(placeholder, strata))


def positive_scores(estimator, X, classes) -> np.ndarray:
    """Continuous scores for AUC: P(class) for binary (``classes[1]``) or the proba matrix."""
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(X)
        return proba[:, 1] if len(classes) == 2 else proba
    decision = estimator.decision_function(X)
    if len(classes) == 2:
        return decision
    decision = decision - decision.max(axis=1, keepdims=True)
    expd = np.exp(decision)
    return expd / expd.sum(axis=1, keepdims=True)


def _score(scoring, y_true, y_pred, scores, classes):
    if scoring == "balanced_accuracy":
        return balanced_accuracy_score(y_true, y_pred)
    if len(np.unique(y_true)) < 2:
        return np.nan
    if len(classes) == 2:
        return roc_auc_score(y_true == classes[1], scores)
    return roc_auc_score(y_true, scores, multi_class="ovr", labels=classes)


def _choose(candidates: pd.DataFrame, rule: str, n_folds: int) -> pd.Series:
    """The chosen row of a table of candidates (``kind``, ``model``, ``k``, ``mean_score``, ...).

    ``"best"``: the highest mean inner score (the first on ties). ``"one_se"``: the
    one-standard-error rule (Hastie, Tibshirani and Friedman 2009, section 7.10): among
    the candidates of the best one's kind and model whose mean score is within one standard
    error (``std_score / sqrt(n_folds)``) of the best, the simplest: fewest features ``k``,
    then strongest penalty (smallest ``C``; models without ``C`` are ordered by ``k`` alone).
    """
    scores = candidates["mean_score"].fillna(-np.inf)
    best = candidates.loc[scores.idxmax()]
    if rule == "best" or not np.isfinite(scores[best.name]):
        return best
    error = np.nan_to_num(best["std_score"] / np.sqrt(n_folds))
    close = candidates[(candidates["kind"] == best["kind"])
                       & (candidates["model"] == best["model"])
                       & (scores >= best["mean_score"] - error)]
    penalty = close["param_C"] if "param_C" in close else pd.Series(np.nan, index=close.index)
    order = close.assign(_c=penalty.fillna(np.inf)).sort_values(["k", "_c"], kind="stable")
    return candidates.loc[order.index[0]]


def _margin(model, Z) -> np.ndarray:
    """Signed score of ``classes_[1]`` (decision value, or log-odds of the probability)."""
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(Z), dtype=np.float64)
    proba = np.clip(model.predict_proba(Z)[:, 1], 1e-12, 1 - 1e-12)
    return np.log(proba) - np.log1p(-proba)


def _probabilities(model, Z) -> np.ndarray:
    """Class probabilities of a fitted model (a softmax of decision values without them)."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(Z)
    return _softmax(model.decision_function(Z))


def _softmax(decision):
    decision = np.atleast_2d(np.asarray(decision, dtype=np.float64).T).T
    if decision.shape[1] == 1:
        decision = np.hstack([-decision / 2, decision / 2])
    decision = decision - decision.max(axis=1, keepdims=True)
    expd = np.exp(decision)
    return expd / expd.sum(axis=1, keepdims=True)


@fill_doc
class FastSearchClassifier(ClassifierMixin, BaseEstimator):
    """Kind → harmonization → confounds → scaling → F-ranked features → model, chosen by inner CV.

    The defaults are :data:`CLASSIFIER_DEFAULTS`.

    The columns of ``X`` are ``[protected covariates | confounds | features]``
    (see :class:`~pipeline.classify.preprocess.FoldPreprocessor`); the feature
    block holds either features used as they are (``kinds=None``) or
    vectorised per-participant covariances from which each connectivity kind is
    computed inside the folds.

    Parameters
    ----------
    models : sequence of str, default=("logistic_l2",)
        Candidate models (names of :data:`pipeline.classify.models.MODELS`).
    k_grid : sequence, default=("all",)
        Candidate numbers of features (ints, fractions in (0, 1] or "all");
        the default keeps every feature (no univariate screen).
        Counts above the number of features are skipped.
    param_grids : dict or None, default=None
        ``{model: {param: [values]}}`` overriding :func:`default_param_grid`.
    n_confounds : int, default=0
        Confound columns regressed out inside each training set (after the
        protected covariates).
    inner_cv : int, default=5
        Number of inner folds (see :func:`inner_splits`).
    inner_repeats : int, default=1
        Repetitions of the inner folds with different shuffles, the scores
        averaged over all of them, so that the choice does not hang on one
        random partition. Folds that leave sites out are not shuffled and run
        once (``settings_["inner_repeats"]`` records how many ran).
    choice : {"best", "one_se"}, default="one_se"
        How the inner scores decide among the candidates of a kind: the best
        mean score, or the one-standard-error rule (the simplest candidate,
        fewest features then smallest ``C``, whose score is within one standard
        error of the best).
    inner_split : {"auto", "sites", "stratified"}, default="auto"
        Inner folds that leave training sites out, or stratified on site x
        class; "auto" leaves sites out when the training rows hold at least
        :data:`AUTO_SITE_SPLIT_MIN_SITES` sites (:func:`resolve_inner_split`).
    scoring : {"auto", "roc_auc", "balanced_accuracy"}, default="auto"
        Inner selection criterion; "auto" is ROC AUC for two classes and
        balanced accuracy otherwise.
    kinds : sequence of str or None, default=None
        Connectivity kinds to try (names of
        :data:`~pipeline.classify.connectivity.CONNECTIVITY_KINDS`); None uses
        the feature columns as given.
    harmonize : {"auto", "none", "combat"}, default="auto"
        Site harmonization inside each training set (sites from ``groups``);
        "auto" runs ComBat when the training rows hold 2 or more sites of 20 or
        more participants each
        (:func:`~pipeline.classify.harmonize.resolve_harmonize`).
    n_protect : int, default=0
        Leading covariate columns that harmonization keeps (e.g. age, sex);
        dropped when there is no harmonization.
    combine : {"mean", "stack", "select"}, default="mean"
        With two or more kinds: average the probabilities of each
        kind's best model ("mean"); try a stacking, a logistic regression on
        their out-of-fold scores kept when its inner score is the best
        ("stack", binary targets); or keep the single best kind ("select").
    calibration : {"none", "sigmoid", "isotonic"}, default="none"
        Calibration of the final model's probabilities
        (:class:`~sklearn.calibration.CalibratedClassifierCV` on the inner
        folds of the training rows, ``ensemble=False``: Platt scaling of
        out-of-fold decision values for "sigmoid"). A stacking's
        meta-learner is a logistic regression and is not recalibrated.
    %(random_state)s
    %(device)s

    Attributes
    ----------
    best_params_ : dict
        ``{"kind": name, "model": name, "k": int, **model parameters}``; for
        the mean or the stacking of kinds, ``{"kind": "mean"|"stack", "model":
        "mean"|"stack", "members": text}``.
    settings_ : dict
        The settings used on these training rows, "auto" ones resolved:
        ``harmonize``, ``inner_split``, ``inner_repeats``, ``choice``,
        ``calibration``, ``combine`` and the seeds ``split_seed`` and
        ``model_seed`` drawn from ``random_state``.
    best_score_ : float
        Mean inner score of the choice.
    members_ : list of dict
        Fitted parts of the chosen candidate, one per kind used: ``kind``,
        ``preprocessor`` (FoldPreprocessor), ``columns`` (selected column
        indices of the preprocessed features), ``model`` (calibrated unless
        ``calibration="none"`` or stacked), ``params``.
    meta_ : LogisticRegression or None
        Meta-learner of the stacking.
    cv_results_ : dict of list
        One entry per candidate (``pandas.DataFrame(cv_results_)`` for a table):
        ``kind``, ``model``, ``k``, ``params`` (text), ``mean_score``,
        ``std_score`` and one ``param_<name>`` per hyperparameter.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(60, 30); y = np.repeat([0, 1], 30); X[y == 1, :2] += 1.5
    >>> clf = FastSearchClassifier(k_grid=(2, 10), random_state=0).fit(X, y)
    >>> clf.best_params_["k"]
    2
    """

    def __init__(self, models=CLASSIFIER_DEFAULTS["models"], k_grid=CLASSIFIER_DEFAULTS["k_grid"],
                 param_grids=None, n_confounds=0, inner_cv=5,
                 inner_repeats=CLASSIFIER_DEFAULTS["inner_repeats"],
                 choice=CLASSIFIER_DEFAULTS["choice"],
                 inner_split=CLASSIFIER_DEFAULTS["inner_split"], scoring="auto", kinds=None,
                 harmonize=CLASSIFIER_DEFAULTS["harmonize"], n_protect=0,
                 combine=CLASSIFIER_DEFAULTS["combine"],
                 calibration=CLASSIFIER_DEFAULTS["calibration"], random_state=None,
                 device="auto"):
        self.models = models
        self.k_grid = k_grid
        self.param_grids = param_grids
        self.n_confounds = n_confounds
        self.inner_cv = inner_cv
        self.inner_repeats = inner_repeats
        self.choice = choice
        self.inner_split = inner_split
        self.scoring = scoring
        self.kinds = kinds
        self.harmonize = harmonize
        self.n_protect = n_protect
        self.combine = combine
        self.calibration = calibration
        self.random_state = random_state
        self.device = device

    def _preprocessor(self, kind):
        return FoldPreprocessor(kind=kind, harmonize=self.settings_["harmonize"],
                                n_protect=self.n_protect, n_confounds=self.n_confounds,
                                device=self.device)

    def _kinds(self):
        if self.kinds is None:
            return [None]
        if isinstance(self.kinds, str) or not len(self.kinds):
            raise ValueError(f"'kinds' must be None or a non-empty sequence of names from "
                             f"{list(CONNECTIVITY_KINDS)}. Got {self.kinds!r}.")
        for kind in self.kinds:
            check_in_allowed("kinds", kind, CONNECTIVITY_KINDS)
        return list(dict.fromkeys(self.kinds))

    def _ks(self, n_features):
        ks = []
        for k in self.k_grid:
            if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > n_features:
                continue
            ks.append(resolve_k(k, n_features))
        return sorted(set(ks)) or [n_features]

    def _candidates(self):
        grids = dict(self.param_grids or {})
        for name in self.models:
            check_in_allowed("models", name, MODEL_NAMES)
            grid = list(ParameterGrid(grids.get(name, default_param_grid(name))))
            # ascending C: each logistic fit warm-starts from the more penalized one
            grid.sort(key=lambda p: (sorted((k, v) for k, v in p.items() if k != "C"),
                                     p.get("C", 0)))
            for params in grid:
                yield name, params

    def _candidate_model(self, name, params, warm, seed):
        """Model for one candidate; logistic models reuse the previous solution (warm start)."""
        if name in warm:
            return warm[name].set_params(**params)
        model = make_model(name, n_classes=len(self.classes_), random_state=seed,
                           device=self.device).set_params(**params)
        if isinstance(model, LogisticRegression) and model.solver != "liblinear":
            model.set_params(warm_start=True)
            warm[name] = model
        return model

    def fit(self, X, y, groups=None):
        """Choose kind, model, hyperparameters and k by inner CV, then refit on all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_protect + n_confounds + n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,) or None
            Sites: they decide the "auto" settings, the inner folds may leave
            them out, and harmonization is per site.
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"'y' must contain at least 2 classes. Got 1 class: "
                             f"{self.classes_.tolist()}.")
        if isinstance(self.models, str) or not len(self.models):
            raise ValueError(f"'models' must be a non-empty sequence of names from "
                             f"{list(MODEL_NAMES)}. Got {self.models!r}.")
        scoring = self.scoring
        check_in_allowed("scoring", scoring, ["auto", "roc_auc", "balanced_accuracy"])
        check_in_allowed("combine", self.combine, COMBINE)
        check_in_allowed("calibration", self.calibration, CALIBRATIONS)
        check_in_allowed("choice", self.choice, CHOICES)
        if scoring == "auto":
            scoring = "roc_auc" if len(self.classes_) == 2 else "balanced_accuracy"
        kinds = self._kinds()
        sites = None if groups is None else np.asarray(groups).astype(str)
        rng = check_random_state(self.random_state)
        split_seed, model_seed = (int(seed) for seed in rng.randint(2**31 - 1, size=2))
        self.settings_ = {"harmonize": resolve_harmonize(self.harmonize, sites),
                          "inner_split": resolve_inner_split(self.inner_split, sites),
                          "choice": self.choice, "calibration": self.calibration,
                          "combine": self.combine, "split_seed": split_seed,
                          "model_seed": model_seed}
        candidates = list(self._candidates())
        repeats = self._repeated_splits(y, sites, split_seed)
        self.settings_["inner_repeats"] = len(repeats)
        splits = [(rep, train, valid) for rep, folds in enumerate(repeats)
                  for train, valid in folds]
        binary = len(self.classes_) == 2
        combined = len(kinds) > 1 and (self.combine == "mean"
                                       or (self.combine == "stack" and binary))
        records, oof = [], {}
        for fold, (rep, train, valid) in enumerate(splits):
            for kind in kinds:
                prefix = self._preprocessor(kind)
                Ztr = prefix.fit_transform(X[train], sites=None if sites is None
                                           else sites[train])
                Zva = prefix.transform(X[valid], sites=None if sites is None else sites[valid])
                ranking = RankedSelector(k="all").fit(Ztr, y[train]).ranking_
                for k in self._ks(Ztr.shape[1]):
                    cols = ranking[:k]
                    Ztr_k = np.ascontiguousarray(Ztr[:, cols])
                    Zva_k = np.ascontiguousarray(Zva[:, cols])
                    warm = {}
                    for name, params in candidates:
                        model = self._candidate_model(name, params, warm, model_seed)
                        model.fit(Ztr_k, y[train])
                        pred = model.predict(Zva_k)
                        scores = positive_scores(model, Zva_k, self.classes_) \
                            if scoring == "roc_auc" else None
                        key = (kind or AS_GIVEN, name, k, repr(sorted(params.items())))
                        records.append({"kind": key[0], "model": name, "k": k,
                                        "params": key[3], "fold": fold,
                                        "score": _score(scoring, y[valid], pred, scores,
                                                        self.classes_),
                                        "_params": params})
                        if combined:
                            value = _margin(model, Zva_k) if self.combine == "stack" \
                                else _probabilities(model, Zva_k)
                            if key not in oof:
                                oof[key] = np.full((len(repeats), len(y), *value.shape[1:]),
                                                   np.nan)
                            oof[key][rep, valid] = value
        table = pd.DataFrame(records)
        keys = ["kind", "model", "k", "params"]
        summary = (table.groupby(keys, sort=False)["score"]
                   .agg(mean_score="mean", std_score="std").reset_index())
        first = table.drop_duplicates(keys).reset_index(drop=True)
        for name in sorted({key for p in first["_params"] for key in p}):
            summary[f"param_{name}"] = [p.get(name, np.nan) for p in first["_params"]]
        best = _choose(summary, self.choice, len(splits))
        chosen = [best]
        self.meta_ = None
        if combined:
            per_kind = [_choose(summary[summary["kind"] == kind], self.choice, len(splits))
                        for kind in (k or AS_GIVEN for k in kinds)]
            parts = [oof[tuple(r[c] for c in keys)] for r in per_kind]
            if self.combine == "stack":
                features = np.stack(parts, axis=-1)  # (repeats, rows, kinds)
                fold_scores = [self._meta_score(scoring, features[rep], y, tr, va)
                               for rep, tr, va in splits]
            else:
                mean = np.mean(parts, axis=0)
                fold_scores = [_score(scoring, y[va],
                                      self.classes_[np.argmax(mean[rep, va], axis=1)],
                                      mean[rep, va, 1] if binary else mean[rep, va],
                                      self.classes_)
                               for rep, _, va in splits]
            row = {"kind": self.combine, "model": self.combine, "k": 0,
                   "params": "; ".join(f"{r['kind']}: {r['model']} k={r['k']} "
                                       f"{r['params']}" for r in per_kind),
                   "mean_score": float(np.nanmean(fold_scores)),
                   "std_score": float(np.nanstd(fold_scores, ddof=1))}
            summary = pd.concat([summary, pd.DataFrame([row])], ignore_index=True)
            if self.combine == "mean" or row["mean_score"] > best["mean_score"]:
                chosen = per_kind
                if self.combine == "stack":
                    self.meta_ = LogisticRegression(C=1.0).fit(features[0], y)
                self.best_params_ = {"kind": self.combine, "model": self.combine,
                                     "members": row["params"]}
                self.best_score_ = row["mean_score"]
        if len(chosen) == 1:
            params = table.loc[(table[keys] == best[keys]).all(axis=1), "_params"].iloc[0]
            self.best_params_ = {"kind": best["kind"], "model": best["model"],
                                 "k": int(best["k"]), **params}
            self.best_score_ = float(best["mean_score"])
        self.cv_results_ = summary.to_dict(orient="list")
        calibrate = self.calibration != "none" and self.meta_ is None
        self.members_ = []
        for row in chosen:
            params = table.loc[(table[keys] == row[keys]).all(axis=1), "_params"].iloc[0]
            kind = None if row["kind"] == AS_GIVEN else row["kind"]
            prefix = self._preprocessor(kind)
            Z = prefix.fit_transform(X, sites=sites)
            columns = np.sort(RankedSelector(k=int(row["k"])).fit(Z, y).top(int(row["k"])))
            model = make_model(row["model"], n_classes=len(self.classes_),
                               random_state=model_seed, device=self.device).set_params(**params)
            if calibrate:  # out-of-fold decision values of the inner folds -> sigmoid
                model = CalibratedClassifierCV(model, method=self.calibration,
                                               cv=repeats[0], ensemble=False)
            model.fit(np.ascontiguousarray(Z[:, columns]), y)
            self.members_.append({"kind": row["kind"], "preprocessor": prefix,
                                  "columns": columns, "model": model,
                                  "params": {"model": row["model"], "k": int(row["k"]),
                                             **params}})
        LOGGER.info("inner CV chose %s (score %.3f) with %s", self.best_params_,
                    self.best_score_, self.settings_)
        return self

    def _repeated_splits(self, y, sites, split_seed):
        """The inner folds of each repeat (one repeat when the folds are not shuffled)."""
        check_int("inner_repeats", self.inner_repeats, 1)
        seeds = [split_seed, *derive_seeds(split_seed, self.inner_repeats - 1)]
        repeats = [inner_splits(self.inner_cv, y, sites, seed,
                                split=self.settings_["inner_split"]) for seed in seeds]
        if len(repeats) > 1 and all(np.array_equal(a[1], b[1])
                                    for a, b in zip(repeats[0], repeats[1], strict=True)):
            return repeats[:1]  # leave-one-site-out: the same folds whatever the seed
        return repeats

    def _meta_score(self, scoring, oof, y, train, valid):
        meta = LogisticRegression(C=1.0).fit(oof[train], y[train])
        scores = meta.predict_proba(oof[valid])[:, 1] if scoring == "roc_auc" else None
        return _score(scoring, y[valid], meta.predict(oof[valid]), scores, self.classes_)

    def _member_inputs(self, member, X, groups):
        sites = None if groups is None else np.asarray(groups).astype(str)
        Z = member["preprocessor"].transform(X, sites=sites)
        return np.ascontiguousarray(Z[:, member["columns"]])

    @property
    def selected_features_(self) -> dict:
        """``{kind: indices}`` of the kept features among each kind's features."""
        check_is_fitted(self)
        return {m["kind"]: m["columns"] for m in self.members_}

    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)

    def predict_proba(self, X, groups=None):
        """Class probabilities: the model's, the mean of the kinds' or the stacking's.

        Models without probabilities (uncalibrated) give a softmax of decision values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_columns)
        groups : array-like of shape (n_samples,) or None
            Sites of the rows (harmonization); None treats all rows as one site.
        """
        X = self._check_X(X)
        if self.meta_ is not None:
            margins = np.column_stack([_margin(m["model"], self._member_inputs(m, X, groups))
                                       for m in self.members_])
            return self.meta_.predict_proba(margins)
        return np.mean([_probabilities(m["model"], self._member_inputs(m, X, groups))
                        for m in self.members_], axis=0)

    def predict(self, X, groups=None):
        """Predicted class of each row (``groups``: sites, as in :meth:`predict_proba`)."""
        X = self._check_X(X)
        if self.meta_ is None and len(self.members_) == 1:
            member = self.members_[0]
            return member["model"].predict(self._member_inputs(member, X, groups))
        return self.classes_[np.argmax(self.predict_proba(X, groups), axis=1)]

    def decision_function(self, X, groups=None):
        """Log-odds of ``classes_[1]`` (binary) or log-probabilities (multi-class)."""
        proba = np.clip(self.predict_proba(X, groups), 1e-12, 1.0)
        if len(self.classes_) == 2:
            return np.log(proba[:, 1]) - np.log(proba[:, 0])
        return np.log(proba)
