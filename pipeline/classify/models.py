"""Classifiers for FNC features: linear models, a tree ensemble and a small torch MLP.

:func:`make_model` builds each model by name with msica's defaults and
:func:`default_param_grid` gives the hyperparameters the inner cross-validation
tries. :class:`TorchMLPClassifier` is a scikit-learn classifier backed by torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline._docs import fill_doc
from pipeline._threads import torch_threads
from pipeline._validation import check_in_allowed, check_random_state, resolve_device

__all__ = ["MODELS", "MODEL_NAMES", "ModelSpec", "TorchMLPClassifier", "default_param_grid",
           "make_model"]

_C_GRID = [0.001, 0.01, 0.1, 1.0]


def _logistic(penalty_ratio, *, binary_solver, multi_solver, tol=1e-4, max_iter=500):
    def factory(n_classes, seed, device):
        return LogisticRegression(C=0.1, l1_ratio=penalty_ratio,
                                  solver=binary_solver if n_classes <= 2 else multi_solver,
                                  class_weight="balanced", max_iter=max_iter, tol=tol,
                                  random_state=seed)
    return factory


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model menu: how to build it, what to search, how to cite it.

    Attributes
    ----------
    name : str
    factory : callable
        ``(n_classes, seed, device) -> unfitted estimator`` with msica's defaults.
    param_grid : dict
        Hyperparameters the inner cross-validation tries.
    description : str
        Methods text.
    references : mapping of str to str
        The works behind the model (key -> reference text), cited after ``description``
        in the methods text; the software (scikit-learn, PyTorch) is cited by every
        report already.
    """

    name: str
    factory: Callable
    param_grid: dict
    description: str
    references: Mapping[str, str] = field(default_factory=dict)


#: The model menu, by name (the registry: one entry and one function per model).
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("logistic_l2", _logistic(0.0, binary_solver="liblinear", multi_solver="lbfgs"),
              {"C": _C_GRID}, "L2-penalized logistic regression"),
    ModelSpec("logistic_l1", _logistic(1.0, binary_solver="liblinear", multi_solver="saga",
                                       tol=1e-3),
              {"C": [0.05, 0.1, 0.5, 1.0]}, "L1-penalized logistic regression",),
    ModelSpec("elasticnet", _logistic(0.5, binary_solver="saga", multi_solver="saga", tol=1e-3,
                                      max_iter=300),
              {"C": [0.05, 0.1, 0.5], "l1_ratio": [0.5]},
              "elastic-net logistic regression"),
    ModelSpec("linear_svm",
              lambda n_classes, seed, device: LinearSVC(C=0.01, class_weight="balanced",
                                                        dual="auto", max_iter=5000,
                                                        random_state=seed),
              {"C": [0.0001, 0.001, 0.01, 0.1]}, "linear support vector machine",),
    ModelSpec("hist_gradient_boosting",
              lambda n_classes, seed, device: HistGradientBoostingClassifier(
                  max_iter=100, learning_rate=0.1, max_leaf_nodes=15, class_weight="balanced",
                  early_stopping=False, random_state=seed),
              {"learning_rate": [0.05, 0.1]}, "histogram gradient boosting"),
    ModelSpec("random_forest",
              lambda n_classes, seed, device: RandomForestClassifier(
                  n_estimators=200, max_features="sqrt", class_weight="balanced",
                  random_state=seed, n_jobs=1),
              {"max_features": ["sqrt"]}, "random forest"),
    ModelSpec("mlp",
              lambda n_classes, seed, device: TorchMLPClassifier(random_state=seed,
                                                                 device=device),
              {"alpha": [1e-3, 1e-1]}, "multi-layer perceptron (torch)"),
)}

#: Names of the models of :data:`MODELS`.
MODEL_NAMES = tuple(MODELS)


def make_model(name: str, *, n_classes: int = 2, random_state=None, device="auto"):
    """An unfitted classifier by name.

    Parameters
    ----------
    name : {"logistic_l2", "logistic_l1", "elasticnet", "linear_svm", \
"hist_gradient_boosting", "random_forest", "mlp"}
    n_classes : int, default=2
        Number of classes; binary logistic models use the fast ``liblinear``
        solver (which also penalizes the intercept, harmless on standardized
        features), multi-class ones ``lbfgs`` (L2) or ``saga`` (L1).
    random_state : int, RandomState or None
        Seed of the model (solvers, trees, MLP initialisation).
    device : str or torch.device, default="auto"
        Used by ``"mlp"`` only.

    Returns
    -------
    sklearn estimator
        Balanced class weights wherever the model supports them.

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`MODEL_NAMES`.

    Examples
    --------
    >>> make_model("logistic_l2", random_state=0).get_params()["solver"]
    'liblinear'
    """
    check_in_allowed("model", name, MODEL_NAMES)
    seed = None if random_state is None else int(check_random_state(random_state).randint(2**31 - 1))
    return MODELS[name].factory(n_classes, seed, device)


def default_param_grid(name: str) -> dict:
    """Hyperparameters tried by the inner cross-validation for model ``name``.

    Returns
    -------
    dict
        ``{parameter: [values]}`` (a grid, as in :class:`sklearn.model_selection.ParameterGrid`).
    """
    check_in_allowed("model", name, MODEL_NAMES)
    return {key: list(values) for key, values in MODELS[name].param_grid.items()}


@fill_doc
class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    """A small multi-layer perceptron in torch, as a scikit-learn classifier.

    Full-batch Adam on the cross-entropy loss (class-balanced when
    ``class_weight="balanced"``) with L2 weight decay ``alpha``; inputs are
    standardized with the training mean and SD. Trains in float32 and predicts
    in float64 with numpy (weights kept as arrays). Weights are
    initialised from a generator seeded by ``random_state`` and training is
    full-batch, so results are reproducible without touching torch's global RNG.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(64,)
    alpha : float, default=1e-3
        L2 weight decay.
    learning_rate : float, default=1e-2
    max_epochs : int, default=200
    class_weight : {"balanced", None} or dict, default="balanced"
    n_threads : int or None, default=1
        CPU threads torch uses during ``fit`` (set for the call and restored
        afterwards; prediction runs in numpy). Small networks are fastest on one thread,
        especially on a busy machine; None keeps torch's setting.
    %(random_state)s
    %(device)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    loss_curve_ : list of float
        Training loss per epoch.
    coefs_ : list of ndarray
        Weights of each layer, shape (n_in, n_out), float64.
    intercepts_ : list of ndarray
        Biases of each layer, float64.
    device_ : str
        Device actually used.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.zeros((20, 2)), np.ones((20, 2))]; y = np.repeat([0, 1], 20)
    >>> TorchMLPClassifier(random_state=0, device="cpu").fit(X, y).score(X, y)
    1.0
    """

    def __init__(self, hidden_layer_sizes=(64,), alpha=1e-3, learning_rate=1e-2,
                 max_epochs=200, class_weight="balanced", n_threads=1, random_state=None,
                 device="auto"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.class_weight = class_weight
        self.n_threads = n_threads
        self.random_state = random_state
        self.device = device

    def _network(self, n_in, n_out, torch):
        layers, width = [], n_in
        for size in self.hidden_layer_sizes:
            layers += [torch.nn.Linear(width, int(size)), torch.nn.ReLU()]
            width = int(size)
        layers.append(torch.nn.Linear(width, n_out))
        return torch.nn.Sequential(*layers)

    def fit(self, X, y):
        """Train the network on ``X`` (n_samples, n_features) and labels ``y``."""
        with torch_threads(self.n_threads):
            return self._fit(X, y)

    def _fit(self, X, y):
        import torch

        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        if not (self.class_weight in ("balanced", None) or isinstance(self.class_weight, dict)):
            raise ValueError(f"'class_weight' must be 'balanced', None or a dict "
                             f"{{class: weight}}. Got {self.class_weight!r}.")
        if not all(isinstance(s, (int, np.integer)) and s > 0 for s in self.hidden_layer_sizes):
            raise ValueError(
                f"'hidden_layer_sizes' must be a tuple of positive ints. Got {self.hidden_layer_sizes!r}."
            )
        self.classes_, codes = np.unique(y, return_inverse=True)
        device = resolve_device(self.device)
        self.device_ = str(device)
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        generator = torch.Generator(device="cpu").manual_seed(seed)
        n_out = max(len(self.classes_), 2)
        net = self._network(X.shape[1], n_out, torch)
        with torch.no_grad():
            for param in net.parameters():  # seeded init, independent of the global RNG
                bound = 1.0 / np.sqrt(param.shape[-1])
                param.copy_(torch.empty(param.shape).uniform_(-bound, bound, generator=generator))
        net = net.to(device)
        Xt = torch.as_tensor((X - self.mean_) / self.scale_, dtype=torch.float32, device=device)
        yt = torch.as_tensor(codes, dtype=torch.long, device=device)
        weight = None
        if self.class_weight is not None:
            if isinstance(self.class_weight, dict):
                w = np.ones(n_out)
                w[: len(self.classes_)] = [float(self.class_weight.get(c, 1.0))
                                           for c in self.classes_]
            else:
                counts = np.bincount(codes, minlength=n_out).astype(float)
                w = np.where(counts > 0, len(codes) / (n_out * np.maximum(counts, 1)), 0.0)
            weight = torch.as_tensor(w, dtype=torch.float32, device=device)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        optim = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.alpha)
        self.loss_curve_ = []
        net.train()
        for _ in range(int(self.max_epochs)):
            optim.zero_grad()
            loss = loss_fn(net(Xt), yt)
            loss.backward()
            optim.step()
            self.loss_curve_.append(float(loss.detach()))
        linear = [m for m in net if isinstance(m, torch.nn.Linear)]
        # plain float64 arrays: inference in numpy (batch-size invariant) and a model file
        # that loads without torch objects (no code runs on load)
        self.coefs_ = [m.weight.detach().cpu().double().numpy().T for m in linear]
        self.intercepts_ = [m.bias.detach().cpu().double().numpy() for m in linear]
        return self

    def _logits(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        hidden = (X - self.mean_) / self.scale_
        for weight, bias in zip(self.coefs_[:-1], self.intercepts_[:-1], strict=True):
            hidden = np.maximum(hidden @ weight + bias, 0.0)
        return hidden @ self.coefs_[-1] + self.intercepts_[-1]

    def predict_proba(self, X):
        """Class probabilities, ndarray of shape (n_samples, n_classes)."""
        logits = self._logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba[:, : len(self.classes_)] / proba[:, : len(self.classes_)].sum(axis=1, keepdims=True)

    def decision_function(self, X):
        """Logit of the positive class (binary) or per-class logits (multi-class)."""
        logits = self._logits(X)
        if len(self.classes_) == 2:
            return logits[:, 1] - logits[:, 0]
        return logits[:, : len(self.classes_)]

    def predict(self, X):
        """Most probable class of each sample."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
