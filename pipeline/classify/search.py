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
from pipeline._validation import check_in_allowed, check_random_state
from pipeline.classify.connectivity import CONNECTIVITY_KINDS
from pipeline.classify.models import MODEL_NAMES, default_param_grid, make_model
from pipeline.classify.preprocess import FoldPreprocessor
from pipeline.classify.selection import RankedSelector, resolve_k

__all__ = ["FastSearchClassifier", "inner_splitter", "positive_scores"]

#: Name of the feature block when no connectivity kind is computed (features as given).
AS_GIVEN = "features"

LOGGER = logging.getLogger("msica.classify")


def inner_splitter(n_splits: int, y, groups=None, random_state=None):
    """Splitter for model selection: sites left out when there are several.

    With ``groups`` holding 2 to ``n_splits`` distinct sites,
    :class:`~sklearn.model_selection.LeaveOneGroupOut` (each inner fold
    validates on a training site the inner model has not seen, as the outer
    test site will be); with more sites, a shuffled
    :class:`~sklearn.model_selection.StratifiedGroupKFold`. Without sites, a
    shuffled :class:`~sklearn.model_selection.StratifiedKFold`, with
    ``n_splits`` lowered to the smallest class size when needed.

    Returns
    -------
    splitter, groups_or_None
    """
    seed = int(check_random_state(random_state).randint(2**31 - 1))
    min_class = int(pd.Series(np.asarray(y)).value_counts().min())
    n_groups = 0 if groups is None else len(np.unique(groups))
    if 2 <= n_groups <= n_splits:
        return LeaveOneGroupOut(), groups
    if n_groups > n_splits:
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed), groups
    return StratifiedKFold(n_splits=max(2, min(n_splits, min_class)), shuffle=True,
                           random_state=seed), None


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


def _margin(model, Z) -> np.ndarray:
    """Signed score of ``classes_[1]`` (decision value, or log-odds of the probability)."""
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(Z), dtype=np.float64)
    proba = np.clip(model.predict_proba(Z)[:, 1], 1e-12, 1 - 1e-12)
    return np.log(proba) - np.log1p(-proba)


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

    The columns of ``X`` are ``[protected covariates | confounds | features]``
    (see :class:`~pipeline.classify.preprocess.FoldPreprocessor`); the feature
    block holds either features used as they are (``kinds=None``) or
    vectorised per-participant covariances from which each connectivity kind is
    computed inside the folds.

    Parameters
    ----------
    models : sequence of str, default=("logistic_l2",)
        Candidate models (names of :data:`pipeline.classify.models.MODELS`).
    k_grid : sequence, default=(0.01, 0.05, 0.2, "all")
        Candidate numbers of features (ints, fractions in (0, 1] or "all").
        Counts above the number of features are skipped.
    param_grids : dict or None, default=None
        ``{model: {param: [values]}}`` overriding :func:`default_param_grid`.
    n_confounds : int, default=0
        Confound columns regressed out inside each training set (after the
        protected covariates).
    inner_cv : int, default=5
        Number of inner folds; with sites, sites are left out (one at a time
        when there are at most ``inner_cv``, see :func:`inner_splitter`).
    scoring : {"auto", "roc_auc", "balanced_accuracy"}, default="auto"
        Inner selection criterion; "auto" is ROC AUC for two classes and
        balanced accuracy otherwise.
    kinds : sequence of str or None, default=None
        Connectivity kinds to try (names of
        :data:`~pipeline.classify.connectivity.CONNECTIVITY_KINDS`); None uses
        the feature columns as given.
    harmonize : {"none", "combat"}, default="none"
        Site harmonization inside each training set (sites from ``groups``).
    n_protect : int, default=0
        Leading covariate columns that harmonization keeps (e.g. age, sex).
    stack : bool, default=False
        Also try a stacking of the kinds (binary targets, two or more kinds): a
        logistic regression on each kind's best model's out-of-fold scores,
        kept when its inner score is the best.
    %(random_state)s
    %(device)s

    Attributes
    ----------
    best_params_ : dict
        ``{"kind": name, "model": name, "k": int, **model parameters}``; for
        the stacking, ``{"kind": "stack", "model": "stack", "members": text}``.
    best_score_ : float
        Mean inner score of the choice.
    members_ : list of dict
        Fitted parts of the chosen candidate, one per kind used: ``kind``,
        ``preprocessor`` (FoldPreprocessor), ``columns`` (selected column
        indices of the preprocessed features), ``model``, ``params``.
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

    def __init__(self, models=("logistic_l2",), k_grid=(0.01, 0.05, 0.2, "all"), param_grids=None,
                 n_confounds=0, inner_cv=5, scoring="auto", kinds=None, harmonize="none",
                 n_protect=0, stack=False, random_state=None, device="auto"):
        self.models = models
        self.k_grid = k_grid
        self.param_grids = param_grids
        self.n_confounds = n_confounds
        self.inner_cv = inner_cv
        self.scoring = scoring
        self.kinds = kinds
        self.harmonize = harmonize
        self.n_protect = n_protect
        self.stack = stack
        self.random_state = random_state
        self.device = device

    def _preprocessor(self, kind):
        return FoldPreprocessor(kind=kind, harmonize=self.harmonize, n_protect=self.n_protect,
                                n_confounds=self.n_confounds, device=self.device)

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
            Sites: inner folds leave them out, and harmonization is per site.
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
        if scoring == "auto":
            scoring = "roc_auc" if len(self.classes_) == 2 else "balanced_accuracy"
        kinds = self._kinds()
        sites = None if groups is None else np.asarray(groups).astype(str)
        rng = check_random_state(self.random_state)
        split_seed, model_seed = rng.randint(2**31 - 1, size=2)
        candidates = list(self._candidates())
        splitter, split_groups = inner_splitter(self.inner_cv, y, sites, split_seed)
        splits = list(splitter.split(X, y, split_groups))
        binary = len(self.classes_) == 2
        records, margins = [], {}
        for fold, (train, valid) in enumerate(splits):
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
                        if binary and self.stack and len(kinds) > 1:
                            margins.setdefault(key, np.full(len(y), np.nan))[valid] = \
                                _margin(model, Zva_k)
        table = pd.DataFrame(records)
        keys = ["kind", "model", "k", "params"]
        summary = (table.groupby(keys, sort=False)["score"]
                   .agg(mean_score="mean", std_score="std").reset_index())
        first = table.drop_duplicates(keys).reset_index(drop=True)
        for name in sorted({key for p in first["_params"] for key in p}):
            summary[f"param_{name}"] = [p.get(name, np.nan) for p in first["_params"]]
        ranked = summary.assign(_s=summary["mean_score"].fillna(-np.inf))
        best = ranked.loc[ranked["_s"].idxmax()]
        chosen = [best]
        if margins:
            per_kind = [ranked[ranked["kind"] == kind].sort_values("_s", ascending=False,
                                                                   kind="stable").iloc[0]
                        for kind in (k or AS_GIVEN for k in kinds)]
            oof = np.column_stack([margins[tuple(r[c] for c in keys)] for r in per_kind])
            stack_scores = [self._meta_score(scoring, oof, y, tr, va) for tr, va in splits]
            stack_row = {"kind": "stack", "model": "stack", "k": 0,
                         "params": "; ".join(f"{r['kind']}: {r['model']} k={r['k']} "
                                             f"{r['params']}" for r in per_kind),
                         "mean_score": float(np.nanmean(stack_scores)),
                         "std_score": float(np.nanstd(stack_scores, ddof=1))}
            summary = pd.concat([summary, pd.DataFrame([stack_row])], ignore_index=True)
            if stack_row["mean_score"] > best["_s"]:
                chosen = per_kind
                self.meta_ = LogisticRegression(C=1.0).fit(oof, y)
                self.best_params_ = {"kind": "stack", "model": "stack",
                                     "members": stack_row["params"]}
                self.best_score_ = stack_row["mean_score"]
        if len(chosen) == 1:
            self.meta_ = None
            params = table.loc[(table[keys] == best[keys]).all(axis=1), "_params"].iloc[0]
            self.best_params_ = {"kind": best["kind"], "model": best["model"],
                                 "k": int(best["k"]), **params}
            self.best_score_ = float(best["mean_score"])
        self.cv_results_ = summary.to_dict(orient="list")
        self.members_ = []
        for row in chosen:
            params = table.loc[(table[keys] == row[keys]).all(axis=1), "_params"].iloc[0]
            kind = None if row["kind"] == AS_GIVEN else row["kind"]
            prefix = self._preprocessor(kind)
            Z = prefix.fit_transform(X, sites=sites)
            columns = np.sort(RankedSelector(k=int(row["k"])).fit(Z, y).top(int(row["k"])))
            model = make_model(row["model"], n_classes=len(self.classes_),
                               random_state=model_seed, device=self.device).set_params(**params)
            model.fit(np.ascontiguousarray(Z[:, columns]), y)
            self.members_.append({"kind": row["kind"], "preprocessor": prefix,
                                  "columns": columns, "model": model,
                                  "params": {"model": row["model"], "k": int(row["k"]),
                                             **params}})
        LOGGER.info("inner CV chose %s (score %.3f)", self.best_params_, self.best_score_)
        return self

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
        """Class probabilities; for models without them, a softmax of decision values.

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
        member = self.members_[0]
        Z = self._member_inputs(member, X, groups)
        if hasattr(member["model"], "predict_proba"):
            return member["model"].predict_proba(Z)
        return _softmax(member["model"].decision_function(Z))

    def predict(self, X, groups=None):
        """Predicted class of each row (``groups``: sites, as in :meth:`predict_proba`)."""
        X = self._check_X(X)
        if self.meta_ is None:
            member = self.members_[0]
            return member["model"].predict(self._member_inputs(member, X, groups))
        return self.classes_[np.argmax(self.predict_proba(X, groups), axis=1)]

    def decision_function(self, X, groups=None):
        """Log-odds of ``classes_[1]`` (binary) or log-probabilities (multi-class)."""
        proba = np.clip(self.predict_proba(X, groups), 1e-12, 1.0)
        if len(self.classes_) == 2:
            return np.log(proba[:, 1]) - np.log(proba[:, 0])
        return np.log(proba)
