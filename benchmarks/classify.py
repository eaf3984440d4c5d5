"""Benchmark msica's feature screen and nested CV against scikit-learn peers.

1. Univariate screen: :func:`pipeline.classify.selection.anova_f_scores` vs
   :func:`sklearn.feature_selection.f_classif` (same statistic, checked equal).
2. Nested CV: :class:`pipeline.classify.search.FastSearchClassifier` (ranking
   once per inner fold, sliced for every k) vs a plain ``GridSearchCV`` over a
   ``StandardScaler → SelectKBest(f_classif) → LogisticRegression`` pipeline
   with the same grid, inner folds and outer folds.

Usage::

    python benchmarks/classify.py --n-samples 1000 --n-features 5000
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np


def make_data(n_samples, n_features, n_informative=10, effect=0.4, random_state=0):
    """Gaussian features, two balanced classes, ``n_informative`` shifted columns."""
    rng = np.random.RandomState(random_state)
    X = rng.randn(n_samples, n_features)
    y = np.repeat([0, 1], [n_samples // 2, n_samples - n_samples // 2])
    X[y == 1, :n_informative] += effect
    return X, y


def make_msica(k_grid, c_grid, inner, random_state=0):
    """msica's classifier with the benchmark grid."""
    from pipeline.classify.search import FastSearchClassifier

    return FastSearchClassifier(models=("logistic_l2",), k_grid=k_grid,
                                param_grids={"logistic_l2": {"C": c_grid}}, inner_cv=inner,
                                random_state=random_state)


def make_peer(k_grid, c_grid, inner, random_state=0):
    """The plain scikit-learn equivalent: GridSearchCV over SelectKBest(f_classif).

    Same model as msica's binary ``logistic_l2`` (liblinear, balanced weights),
    so the ratio measures the search strategy, not the solver.
    """
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = Pipeline([("scale", StandardScaler()), ("select", SelectKBest(f_classif)),
                     ("model", LogisticRegression(solver="liblinear", class_weight="balanced",
                                                  max_iter=500))])
    return GridSearchCV(pipe, {"select__k": list(k_grid), "model__C": list(c_grid)},
                        scoring="roc_auc",
                        cv=StratifiedKFold(inner, shuffle=True, random_state=random_state))


def bench_screen(X, y, repeats=3):
    """Time the F screen against sklearn's f_classif."""
    from sklearn.feature_selection import f_classif

    from pipeline.classify.selection import anova_f_scores

    def best(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    t_msica, f_msica = best(lambda: anova_f_scores(X, y))
    t_peer, f_peer = best(lambda: f_classif(X, y)[0])
    assert np.allclose(f_msica, f_peer, rtol=1e-8), "F statistics differ from sklearn"
    return t_msica, t_peer


def bench_nested(X, y, k_grid, c_grid, outer, inner):
    """Time both nested CVs on the same outer folds; return times and balanced accuracies."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    splits = list(StratifiedKFold(outer, shuffle=True, random_state=0).split(X, y))
    out = {}
    for name, factory in (("msica", make_msica), ("sklearn GridSearchCV", make_peer)):
        t0 = time.perf_counter()
        preds = np.empty_like(y)
        for train, test in splits:
            est = factory(k_grid, c_grid, inner).fit(X[train], y[train])
            preds[test] = est.predict(X[test])
        out[name] = (time.perf_counter() - t0, balanced_accuracy_score(y, preds))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--n-features", type=int, default=5000)
    parser.add_argument("--outer", type=int, default=5)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--k-grid", type=int, nargs="+", default=[10, 50, 200, 1000])
    parser.add_argument("--c-grid", type=float, nargs="+", default=[0.001, 0.01, 0.1, 1.0])
    parser.add_argument("--skip-nested", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP threads for both (1 avoids oversubscription)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads):
        _run(args)


def _run(args):
    X, y = make_data(args.n_samples, args.n_features)
    print(f"machine: {platform.processor() or platform.machine()}, device: cpu, dtype: float64, "
          f"threads: {args.threads}, X: {X.shape}, classes: 2 (balanced)")
    t_msica, t_peer = bench_screen(X, y)
    print(f"[screen] msica anova_f_scores {t_msica:.3f} s | sklearn f_classif {t_peer:.3f} s | "
          f"ratio peer/msica = {t_peer / t_msica:.1f}x")
    if args.skip_nested:
        return
    print(f"[nested CV] outer {args.outer} x inner {args.inner} folds, k in {args.k_grid}, "
          f"C in {args.c_grid} ({len(args.k_grid) * len(args.c_grid)} candidates)")
    res = bench_nested(X, y, args.k_grid, args.c_grid, args.outer, args.inner)
    for name, (secs, bacc) in res.items():
        print(f"  {name:22s} {secs:8.1f} s   balanced accuracy {bacc:.3f}")
    ratio = res["sklearn GridSearchCV"][0] / res["msica"][0]
    print(f"  ratio peer/msica = {ratio:.1f}x")


if __name__ == "__main__":
    main()
