"""Model, hyperparameter and feature-count selection by inner cross-validation.

:class:`FastSearchClassifier` is msica's classifier: confound regression,
standardization, univariate ranking and a model, with the number of features
``k``, the model and its hyperparameters chosen by an inner cross-validation.
It gives the same choice as a :class:`~sklearn.model_selection.GridSearchCV`
over the equivalent pipeline, but fits the preprocessing and the ranking once
per inner fold and slices it for every ``k`` (the expensive parts are not
repeated for each grid point).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import ParameterGrid, StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline._docs import fill_doc
from pipeline._validation import check_in_allowed, check_random_state
from pipeline.classify.confounds import ConfoundRegressor
from pipeline.classify.models import MODEL_NAMES, default_param_grid, make_model
from pipeline.classify.selection import RankedSelector, resolve_k

__all__ = ["FastSearchClassifier", "inner_splitter", "positive_scores"]

LOGGER = logging.getLogger("msica.classify")


def inner_splitter(n_splits: int, y, groups=None, random_state=None):
    """Splitter for model selection: by group when there are enough groups.

    With ``groups`` holding at least ``n_splits`` distinct values, a shuffled
    :class:`~sklearn.model_selection.StratifiedGroupKFold` keeps groups (sites)
    apart; otherwise a shuffled :class:`~sklearn.model_selection.StratifiedKFold`
    is used, with ``n_splits`` lowered to the smallest class size when needed.

    Returns
    -------
    splitter, groups_or_None
    """
    seed = int(check_random_state(random_state).randint(2**31 - 1))
    min_class = int(pd.Series(np.asarray(y)).value_counts().min())
    if groups is not None and len(np.unique(groups)) >= n_splits:
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


@fill_doc
class FastSearchClassifier(ClassifierMixin, BaseEstimator):
    """Confounds → scaling → F-ranked features → model, all chosen by inner CV.

    Parameters
    ----------
    models : sequence of str, default=("logistic_l2",)
        Candidate models (names of :func:`pipeline.classify.models.make_model`).
    k_grid : sequence, default=(0.01, 0.05, 0.2, "all")
        Candidate numbers of features (ints, fractions in (0, 1] or "all").
        Counts above the number of features are skipped.
    param_grids : dict or None, default=None
        ``{model: {param: [values]}}`` overriding :func:`default_param_grid`.
    n_confounds : int, default=0
        Leading confound columns of ``X`` (see :class:`ConfoundRegressor`).
    inner_cv : int, default=5
        Number of inner folds.
    scoring : {"auto", "roc_auc", "balanced_accuracy"}, default="auto"
        Inner selection criterion; "auto" is ROC AUC for two classes and
        balanced accuracy otherwise.
    preprocessor : sklearn transformer or None, default=None
        Extra step fitted first on the feature columns of each training set
        (e.g. a tangent-space embedding); its output columns are the features
        that are ranked and selected. Confound columns bypass it.
    %(random_state)s
    %(device)s

    Attributes
    ----------
    best_params_ : dict
        ``{"model": name, "k": int, **model parameters}``.
    best_score_ : float
        Mean inner score of the choice.
    best_estimator_ : sklearn.pipeline.Pipeline
        Steps ``confounds``, ``scale``, ``select``, ``model`` (and ``preprocess``
        first when given), refitted on all the rows given to ``fit``.
    cv_results_ : pandas.DataFrame
        One row per candidate: ``model``, ``k``, ``params`` (text), ``mean_score``,
        ``std_score`` and one ``param_<name>`` column per hyperparameter.
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
                 n_confounds=0, inner_cv=5, scoring="auto", preprocessor=None, random_state=None,
                 device="auto"):
        self.models = models
        self.k_grid = k_grid
        self.param_grids = param_grids
        self.n_confounds = n_confounds
        self.inner_cv = inner_cv
        self.scoring = scoring
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.device = device

    def _prefix(self):
        steps = []
        if self.preprocessor is not None:  # features only; confound columns pass through
            steps.append(("preprocess", ColumnTransformer(
                [("confounds", "passthrough", slice(0, self.n_confounds)),
                 ("features", clone(self.preprocessor), slice(self.n_confounds, None))])))
        steps += [("confounds", ConfoundRegressor(n_confounds=self.n_confounds)),
                  ("scale", StandardScaler())]
        return steps

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
        """Choose model, hyperparameters and k by inner CV, then refit on all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_confounds + n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,) or None
            Sites; inner folds keep them apart when there are enough.
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
        rng = check_random_state(self.random_state)
        split_seed, model_seed = rng.randint(2**31 - 1, size=2)
        candidates = list(self._candidates())
        splitter, split_groups = inner_splitter(self.inner_cv, y, groups, split_seed)
        records = []
        for train, valid in splitter.split(X, y, split_groups):
            prefix = Pipeline(self._prefix()).fit(X[train], y[train])
            Ztr, Zva = prefix.transform(X[train]), prefix.transform(X[valid])
            n_features = Ztr.shape[1]
            ranking = RankedSelector(k="all").fit(Ztr, y[train]).ranking_
            for k in self._ks(n_features):
                cols = ranking[:k]
                Ztr_k, Zva_k = np.ascontiguousarray(Ztr[:, cols]), np.ascontiguousarray(Zva[:, cols])
                warm = {}
                for name, params in candidates:
                    model = self._candidate_model(name, params, warm, model_seed)
                    model.fit(Ztr_k, y[train])
                    pred = model.predict(Zva_k)
                    scores = positive_scores(model, Zva_k, self.classes_) \
                        if scoring == "roc_auc" else None
                    records.append({"model": name, "k": k, "params": repr(sorted(params.items())),
                                    "score": _score(scoring, y[valid], pred, scores, self.classes_),
                                    "_params": params})
        table = pd.DataFrame(records)
        summary = (table.groupby(["model", "k", "params"], sort=False)["score"]
                   .agg(mean_score="mean", std_score="std").reset_index())
        first = table.drop_duplicates(["model", "k", "params"]).reset_index(drop=True)
        for name in sorted({key for p in first["_params"] for key in p}):
            summary[f"param_{name}"] = [p.get(name, np.nan) for p in first["_params"]]
        best = summary.loc[summary["mean_score"].fillna(-np.inf).idxmax()]
        best_params = table.loc[(table["model"] == best["model"]) & (table["k"] == best["k"])
                                & (table["params"] == best["params"]), "_params"].iloc[0]
        self.cv_results_ = summary
        self.best_score_ = float(best["mean_score"])
        self.best_params_ = {"model": best["model"], "k": int(best["k"]), **best_params}
        model = make_model(best["model"], n_classes=len(self.classes_), random_state=model_seed,
                           device=self.device)
        model.set_params(**best_params)
        self.best_estimator_ = Pipeline(self._prefix() + [
            ("select", RankedSelector(k=int(best["k"]))), ("model", model)]).fit(X, y)
        LOGGER.info("inner CV chose %s (score %.3f)", self.best_params_, self.best_score_)
        return self

    @property
    def selected_features_(self) -> np.ndarray:
        """Indices of the kept features among the feature columns (confounds excluded)."""
        check_is_fitted(self)
        return np.sort(self.best_estimator_.named_steps["select"].get_support(indices=True))

    def predict(self, X):
        """Predicted class of each row."""
        check_is_fitted(self)
        return self.best_estimator_.predict(np.asarray(X, dtype=np.float64))

    def predict_proba(self, X):
        """Class probabilities; for models without them, a softmax of decision values."""
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        if hasattr(self.best_estimator_, "predict_proba"):
            return self.best_estimator_.predict_proba(X)
        decision = np.atleast_2d(self.best_estimator_.decision_function(X).T).T
        if decision.shape[1] == 1:
            decision = np.hstack([-decision / 2, decision / 2])
        decision = decision - decision.max(axis=1, keepdims=True)
        expd = np.exp(decision)
        return expd / expd.sum(axis=1, keepdims=True)

    def decision_function(self, X):
        """Log-odds of ``classes_[1]`` (binary) or log-probabilities (multi-class)."""
        proba = np.clip(self.predict_proba(X), 1e-12, 1.0)
        if len(self.classes_) == 2:
            return np.log(proba[:, 1]) - np.log(proba[:, 0])
        return np.log(proba)
