"""Every scikit-learn-style estimator in ``pipeline/`` honours scikit-learn's estimator contract.

Estimators that take a plain ``(n_samples, n_features)`` array run scikit-learn's
full ``parametrize_with_checks`` in the test module of their package (listed in
``FULL_CHECKS``). Estimators whose input is structured (a template beside the data,
a list of runs, time courses per scale) cannot run those checks on generated arrays;
they run here the checks that need no data and, on a small input of their own kind,
the contract of ``fit``: it returns the estimator, leaves the parameters as given,
sets fitted attributes only, and gives the same result twice with the same seed.
A new estimator is caught by ``test_every_estimator_is_checked`` until it is listed.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks
from sklearn.utils.validation import check_is_fitted

import pipeline
from pipeline.exceptions import ConvergenceWarning
from pipeline.fnc.states import DynamicFNC
from pipeline.fnc.static import StaticFNC
from pipeline.ica.group import GroupICA
from pipeline.ica.icasso import ICASSO
from pipeline.ica.scica import SpatiallyConstrainedICA

#: Estimators that run scikit-learn's full common checks, and where.
FULL_CHECKS = {
    "pipeline.classify.confounds.ConfoundRegressor": "tests/pipeline/classify/test_models.py",
    "pipeline.classify.connectivity.ConnectivityFeatures":
        "tests/pipeline/classify/test_connectivity.py",
    "pipeline.classify.harmonize.ComBat": "tests/pipeline/classify/test_harmonize.py",
    "pipeline.classify.models.TorchMLPClassifier": "tests/pipeline/classify/test_models.py",
    "pipeline.classify.preprocess.FoldPreprocessor": "tests/pipeline/classify/test_harmonize.py",
    "pipeline.classify.search.FastSearchClassifier": "tests/pipeline/classify/test_models.py",
    "pipeline.classify.selection.RankedSelector": "tests/pipeline/classify/test_models.py",
    "pipeline.classify.selection.StabilitySelector": "tests/pipeline/classify/test_models.py",
    "pipeline.ica.fastica.TorchFastICA": "tests/pipeline/ica/test_infomax.py",
    "pipeline.ica.infomax.Infomax": "tests/pipeline/ica/test_infomax.py",
}


def _runs(seed=0, n_runs=3, n_volumes=80, n_networks=4):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n_volumes, n_networks)) for _ in range(n_runs)]


def _subjects(seed=0):
    rng = np.random.RandomState(seed)
    maps = rng.laplace(size=(3, 400))
    return maps, [rng.randn(40, 3) @ maps + 0.1 * rng.randn(40, 400) for _ in range(3)]


def _whitened_mixture(seed=0):
    rng = np.random.RandomState(seed)
    sources = rng.laplace(size=(3, 2000))
    return np.linalg.qr(rng.randn(3, 3))[0] @ (sources / sources.std(1, keepdims=True))


def _scica_case():
    maps, subjects = _subjects()
    return SpatiallyConstrainedICA(maps, device="cpu"), subjects[0]


#: Estimators with structured input: a factory of (estimator, input of its kind), and why.
STRUCTURED_INPUT = {
    "pipeline.fnc.static.StaticFNC": (
        lambda: (StaticFNC(), {4: _runs(n_runs=1)[0], 6: _runs(1, 1, n_networks=6)[0]}),
        "time courses per model order (a dict of arrays), not one feature matrix"),
    "pipeline.fnc.states.DynamicFNC": (
        lambda: (DynamicFNC(n_states=2, window=20, random_state=0), _runs()),
        "a list of runs of different lengths, windowed in time"),
    "pipeline.ica.group.GroupICA": (
        lambda: (GroupICA(3, random_state=0, device="cpu"), _subjects()[1]),
        "a list of participants' runs on the same voxels"),
    "pipeline.ica.icasso.ICASSO": (
        lambda: (ICASSO(n_runs=3, algorithm="fastica", random_state=0, device="cpu"),
                 _whitened_mixture()),
        "whitened data with components in rows (GIFT's layout), not samples in rows"),
    "pipeline.ica.scica.SpatiallyConstrainedICA": (
        _scica_case,
        "a template on the data's voxels is part of the model; generated arrays have none"),
}

#: scikit-learn's checks that need no data (they take an instance).
DATALESS_CHECKS = (
    "check_parameters_default_constructible",
    "check_no_attributes_set_in_init",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_do_not_raise_errors_in_init_or_set_params",
)


def _pipeline_estimators() -> dict[str, type]:
    found = {}
    for module in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        imported = importlib.import_module(module.name)
        for name, cls in inspect.getmembers(imported, inspect.isclass):
            if issubclass(cls, BaseEstimator) and cls.__module__ == module.name:
                found[f"{cls.__module__}.{name}"] = cls
    return found


ESTIMATORS = _pipeline_estimators()


def test_every_estimator_is_checked():
    assert set(FULL_CHECKS).isdisjoint(STRUCTURED_INPUT)
    assert set(ESTIMATORS) == set(FULL_CHECKS) | set(STRUCTURED_INPUT)


@pytest.mark.parametrize("check", DATALESS_CHECKS)
@pytest.mark.parametrize("path", sorted(ESTIMATORS))
def test_dataless_checks(path, check):
    getattr(estimator_checks, check)(path.rsplit(".", 1)[1], ESTIMATORS[path]())


@pytest.mark.parametrize("path", sorted(ESTIMATORS))
def test_unfitted_is_reported(path):
    with pytest.raises(NotFittedError):
        check_is_fitted(ESTIMATORS[path]())


def _fitted_attributes(estimator) -> dict[str, object]:
    return {k: v for k, v in vars(estimator).items() if k.endswith("_") and not k.startswith("_")}


def _assert_same(a, b, where):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif hasattr(a, "shape") or isinstance(a, (int, float, np.number)):
        np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                                   rtol=1e-6, atol=1e-9, err_msg=where)
    else:
        assert type(a) is type(b), where


@pytest.mark.parametrize("path", sorted(STRUCTURED_INPUT))
def test_fit_contract_on_structured_input(path):
    make, _reason = STRUCTURED_INPUT[path]
    estimator, data = make()
    params = {k: repr(v) for k, v in estimator.get_params().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert estimator.fit(data) is estimator
        again = clone(estimator).fit(data)
    check_is_fitted(estimator)
    assert {k: repr(v) for k, v in estimator.get_params().items()} == params
    public = {k for k in vars(estimator) if not k.startswith("_")}
    assert public - set(params) == set(_fitted_attributes(estimator))
    fitted = _fitted_attributes(estimator)
    assert fitted.keys() == _fitted_attributes(again).keys()
    for name, value in fitted.items():
        if name != "device_":
            _assert_same(value, getattr(again, name), f"{path}.{name}")
