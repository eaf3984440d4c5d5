"""ABIDE I (PCP, CC200) autism vs control: msica's transfer stack vs a plain baseline, same run.

Real ROI time series from ``shared/data/abide_cc200`` (see its SOURCE.md).
Every pipeline runs leave-one-site-out (LOSO) on the same outer splits, in the
same process:

* **baseline**: nilearn ``ConnectivityMeasure(kind="correlation")`` features
  (upper triangle, no diagonal), ``StandardScaler`` + L2 logistic regression
  with ``C`` chosen by a 5-fold inner ``GridSearchCV`` (random folds).
* **msica**: :class:`FastSearchClassifier` with the pipeline's defaults
  (``CLASSIFIER_DEFAULTS``) on the tangent and correlation kinds of each
  participant's Ledoit-Wolf covariance (computed once; the kinds, ComBat and
  C learned inside each training set, the "auto" rules decided there, the
  kinds' probabilities averaged). ComBat protects age and sex; a test site's
  ComBat effects come from its own features (no labels). The ablations
  (``--variants``) each change one setting of it.

Printed per pipeline: pooled and per-site balanced accuracy and AUC with
bootstrap 95% CIs, the site-averaged figures, the calibration curve and Brier
score, the choices made in each fold, and (``--n-permutations``) the
permutation p-value of msica's pooled balanced accuracy. Also timed: one
tangent-space fit and transform on the training set of the largest fold,
msica vs nilearn's ``ConnectivityMeasure(kind="tangent")`` on the same
participants.

Subject exclusions (printed with counts): PCP phenotype rows with
``FILE_ID = no_filename`` (``PCP_FILE_ID_ASSIGNED = 0``, all failed PCP rater-1
QC), byte-identical duplicate time series (the second copy is dropped) and
files with an all-zero ROI column (undefined correlations).

Usage::

    python benchmarks/abide.py                       # LOSO on the three sites
    python benchmarks/abide.py --n-permutations 20   # a real permutation test (default 0)
    python benchmarks/abide.py --test-data OTHER_DIR # train on --data, test on OTHER_DIR
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "abide_cc200"
MED_MISSING = {"", "-9999", "`", "nan"}
PROTECT = ("age", "sex")

#: msica's default (``"msica"``: the pipeline's CLASSIFIER_DEFAULTS on tangent + correlation)
#: and the ablations run beside it: FastSearchClassifier options over the defaults.
VARIANTS = {
    "msica": {"kinds": ("tangent", "correlation")},
    "svm-menu": {"kinds": ("tangent", "correlation"), "models": ("logistic_l2", "linear_svm")},
    "elasticnet-menu": {"kinds": ("tangent", "correlation"),
                        "models": ("logistic_l2", "elasticnet")},
    "stack": {"kinds": ("tangent", "correlation"), "combine": "stack"},
    "no-combat": {"kinds": ("tangent", "correlation"), "harmonize": "none"},
    "no-calibration": {"kinds": ("tangent", "correlation"), "calibration": "none"},
    "c-grid-3": {"kinds": ("tangent", "correlation"),
                 "param_grids": {"logistic_l2": {"C": [1e-3, 1e-2, 1e-1]}}},
    "c-grid-3-no-calibration": {"kinds": ("tangent", "correlation"), "calibration": "none",
                                "param_grids": {"logistic_l2": {"C": [1e-3, 1e-2, 1e-1]}}},
    "screen": {"kinds": ("tangent", "correlation"), "k_grid": (0.05, 0.25, "all")},
    "inner-sites": {"kinds": ("tangent", "correlation"), "inner_split": "sites"},
    "inner-repeats-3": {"kinds": ("tangent", "correlation"), "inner_repeats": 3},
    "best-score": {"kinds": ("tangent", "correlation"), "choice": "best"},
    "tangent": {"kinds": ("tangent",)},
    "correlation": {"kinds": ("correlation",)},
    "partial": {"kinds": ("partial_correlation",)},
}


def load_abide(folder: Path) -> tuple[list[np.ndarray], pd.DataFrame, dict]:
    """Time series and a participants table, with the exclusions applied and counted."""
    subjects = pd.read_csv(folder / "subjects.tsv", sep="\t", dtype={"CURRENT_MED_STATUS": str},
                           keep_default_na=False)
    excluded = {}
    keep = subjects["PCP_FILE_ID_ASSIGNED"].astype(int) == 1
    excluded["FILE_ID=no_filename in PCP phenotype (failed QC)"] = int((~keep).sum())
    subjects = subjects[keep].reset_index(drop=True)
    series, digests, rows = [], set(), []
    n_dup = n_zero = 0
    for row in subjects.itertuples(index=False):
        raw = gzip.open(folder / "timeseries" / f"{row.FILE_ID}_rois_cc200.1D.gz").read()
        digest = hashlib.sha256(raw).hexdigest()
        if digest in digests:
            n_dup += 1
            continue
        digests.add(digest)
        ts = np.loadtxt(raw.decode().splitlines(), comments="#")
        if np.any(np.all(ts == 0, axis=0)):
            n_zero += 1
            continue
        series.append(ts)
        rows.append(row)
    excluded["duplicate time series (second copy)"] = n_dup
    excluded["all-zero ROI column"] = n_zero
    table = pd.DataFrame(rows)
    med = table["CURRENT_MED_STATUS"].astype(str).str.strip()
    participants = pd.DataFrame({
        "participant_id": "sub-" + table["SUB_ID"].astype(str),
        "site": table["SITE_ID"].astype(str),
        "diagnosis": np.where(table["DX_GROUP"].astype(int) == 1, "ASD", "control"),
        "age": table["AGE_AT_SCAN"].astype(float),
        "sex": np.where(table["SEX"].astype(int) == 1, "M", "F"),
        "mean_fd": table["func_mean_fd"].astype(float),
        "medication": np.where(med.isin(MED_MISSING), "n/a",
                               np.where(med == "1", "on", np.where(med == "0", "off", "n/a"))),
    })
    return series, participants, excluded


def correlation_features(series) -> np.ndarray:
    """Upper-triangle Pearson correlations (nilearn ConnectivityMeasure, kind='correlation')."""
    from nilearn.connectome import ConnectivityMeasure

    return ConnectivityMeasure(kind="correlation", vectorize=True,
                               discard_diagonal=True).fit_transform(series)


def make_baseline(inner=5, random_state=0):
    """Standardized L2 logistic regression, C by inner GridSearchCV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(solver="liblinear", max_iter=1000))
    return GridSearchCV(pipe, {"logisticregression__C": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
                        scoring="roc_auc",
                        cv=StratifiedKFold(inner, shuffle=True, random_state=random_state))


def make_msica(variant: str, n_protect: int, random_state=0):
    """msica's classifier for one variant (no per-site tuning: the same settings everywhere)."""
    from pipeline.classify.search import FastSearchClassifier

    return FastSearchClassifier(n_protect=n_protect, inner_cv=5, random_state=random_state,
                                device="cpu", **VARIANTS[variant])


def _ci(table, metric, prefix=""):
    return (f"{table[f'{prefix}{metric}']:.3f} [{table[f'{prefix}{metric}_ci_low']:.3f}, "
            f"{table[f'{prefix}{metric}_ci_high']:.3f}]")


def _print_result(name, res, seconds):
    from sklearn.metrics import brier_score_loss

    m = res.metrics
    print(f"  {name} ({seconds:.0f} s): balanced accuracy "
          f"{m.loc['balanced_accuracy', 'estimate']:.3f} "
          f"[{m.loc['balanced_accuracy', 'ci_low']:.3f}, {m.loc['balanced_accuracy', 'ci_high']:.3f}]"
          f", AUC {m.loc['roc_auc', 'estimate']:.3f} "
          f"[{m.loc['roc_auc', 'ci_low']:.3f}, {m.loc['roc_auc', 'ci_high']:.3f}]")
    print(f"      site-averaged: balanced accuracy {res.per_site['balanced_accuracy'].mean():.3f}, "
          f"AUC {res.per_site['roc_auc'].mean():.3f}")
    for row in res.per_site.to_dict(orient="records"):
        print(f"      site {row['site']:6s} n={row['n']:3d}  balanced accuracy "
              f"{_ci(row, 'balanced_accuracy')}  AUC {_ci(row, 'roc_auc')}")
    pred = res.predictions
    if res.calibration is not None:
        brier = brier_score_loss(pred["y_true"] == res.pos_label, pred["score"])
        curve = ", ".join(f"{p:.2f}->{t:.2f}" for p, t in
                          zip(res.calibration["prob_pred"], res.calibration["prob_true"],
                              strict=True))
        print(f"      calibration (predicted -> observed P({res.pos_label})): {curve}; "
              f"Brier {brier:.3f}")
    choices = [c for c in ("kind", "model", "k", "C", "members", "harmonize", "inner_split",
                           "inner_repeats", "choice", "calibration") if c in res.folds]
    if choices:
        for row in res.folds.to_dict(orient="records"):
            print(f"      fold {row['test_sites']}: "
                  + ", ".join(f"{c}={row[c]}" for c in choices if pd.notna(row.get(c))))


def time_tangent(table, train_rows):
    """Seconds of one tangent fit and transform (covariances given), iterations, reference."""
    from pipeline.classify.connectivity import ConnectivityFeatures

    vectors = table.to_numpy()[train_rows]
    t0 = time.perf_counter()
    est = ConnectivityFeatures(kind="tangent", device="cpu").fit(vectors)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    est.transform(vectors)
    t_transform = time.perf_counter() - t0
    return t_fit, t_transform, est.n_iter_, est.mean_


def time_tangent_nilearn(series):
    """Seconds of nilearn's tangent fit and transform of the series, and its reference."""
    from nilearn.connectome import ConnectivityMeasure

    zscored = [(s - s.mean(axis=0)) / s.std(axis=0, ddof=1) for s in series]
    t0 = time.perf_counter()
    peer = ConnectivityMeasure(kind="tangent", vectorize=True).fit(zscored)
    t_fit = time.perf_counter() - t0
    peer.transform(zscored)
    return t_fit, time.perf_counter() - t0, peer.mean_


def run_loso(series, participants, target, pos_label, variants, n_permutations, n_jobs,
             time_peer, random_state=0):
    """Leave-one-site-out CV of the baseline and msica's variants on one target."""
    from pipeline.classify.analysis import design_matrix
    from pipeline.classify.connectivity import covariance_table, participant_covariances
    from pipeline.classify.targets import derive_target
    from pipeline.classify.validation import nested_cross_validate, permutation_test

    tgt = derive_target(participants, target, control_values=("control",))
    ids = participants["participant_id"].tolist()
    rows = [ids.index(p) for p in tgt.participant_ids]
    sub = [series[i] for i in rows]
    y = tgt.y.to_numpy()
    table = participants.set_index("participant_id")
    sites = table.loc[tgt.participant_ids, "site"].to_numpy()
    print(f"\n=== target {target}: {len(y)} participants; per site x class:\n"
          f"{pd.crosstab(sites, y).to_string()}")
    t0 = time.perf_counter()
    covs = covariance_table(participant_covariances(sub), [f"r{i + 1}" for i in
                                                          range(sub[0].shape[1])],
                            tgt.participant_ids)
    print(f"  per-participant Ledoit-Wolf covariances (once): {time.perf_counter() - t0:.1f} s")
    largest = np.flatnonzero(sites != pd.Series(sites).value_counts().idxmin())
    t_fit, t_transform, n_iter, mean = time_tangent(covs, largest)
    line = (f"  tangent space on {len(largest)} participants x {sub[0].shape[1]} ROIs: fit "
            f"{t_fit:.1f} s ({n_iter} geometric-mean iterations), transform {t_transform:.1f} s")
    if time_peer:
        t_peer_fit, t_peer, peer_mean = time_tangent_nilearn([sub[i] for i in largest])
        line += (f"; nilearn ConnectivityMeasure(kind='tangent') fit {t_peer_fit:.1f} s, "
                 f"fit+transform {t_peer:.1f} s (ratio nilearn/msica: fit "
                 f"{t_peer_fit / t_fit:.1f}x, fit+transform {t_peer / (t_fit + t_transform):.1f}x"
                 f"); max |msica - nilearn| reference {np.abs(mean - peer_mean).max():.1e}")
    print(line)
    if variants is None:  # --timing-only
        return {}
    results = {}
    t0 = time.perf_counter()
    corr = correlation_features(sub)
    results["baseline"] = (nested_cross_validate(
        make_baseline(random_state=random_state), corr, y, groups=sites, pos_label=pos_label,
        random_state=random_state, n_jobs=n_jobs), time.perf_counter() - t0)
    design = design_matrix(covs, table, (), protect=PROTECT)
    for variant in variants:
        t0 = time.perf_counter()
        est = make_msica(variant, design.n_protect, random_state)
        results[variant] = (nested_cross_validate(est, design.X, y, groups=sites, pos_label=pos_label,
                                                  random_state=random_state, n_jobs=n_jobs),
                            time.perf_counter() - t0)
    for name, (res, seconds) in results.items():
        _print_result(name, res, seconds)
    base = results["baseline"][0]
    for name in variants:
        res = results[name][0]
        print(f"  {name} - baseline: balanced accuracy pooled "
              f"{res.balanced_accuracy - base.balanced_accuracy:+.3f}, site-averaged "
              f"{res.per_site['balanced_accuracy'].mean() - base.per_site['balanced_accuracy'].mean():+.3f}; "
              f"AUC pooled {res.roc_auc - base.roc_auc:+.3f}, site-averaged "
              f"{res.per_site['roc_auc'].mean() - base.per_site['roc_auc'].mean():+.3f}")
    if n_permutations and variants:
        t0 = time.perf_counter()
        perm = permutation_test(make_msica(variants[0], design.n_protect, random_state),
                                design.X, y,
                                groups=sites, n_permutations=n_permutations,
                                random_state=random_state, pos_label=pos_label, n_jobs=n_jobs,
                                observed=results[variants[0]][0])
        print(f"  {variants[0]} permutation test (labels permuted within site, whole nested "
              f"CV): observed {perm.observed:.3f}, null mean {perm.null.mean():.3f}, max "
              f"{perm.null.max():.3f}, p = {perm.p_value:.3f} ({n_permutations} permutations, "
              f"{time.perf_counter() - t0:.0f} s)")
    return results


def run_transfer(train, test, variants, random_state=0):
    """Train on all sites of --data; test on the sites of --test-data (new sites for ComBat)."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from pipeline.classify.analysis import design_matrix
    from pipeline.classify.connectivity import covariance_table, participant_covariances

    (s_tr, p_tr), (s_te, p_te) = train, test
    y_tr, y_te = p_tr["diagnosis"].to_numpy(), p_te["diagnosis"].to_numpy()
    labels = [f"r{i + 1}" for i in range(s_tr[0].shape[1])]
    out = {}
    base = make_baseline(random_state=random_state).fit(correlation_features(s_tr), y_tr)
    corr_te = correlation_features(s_te)
    out["baseline"] = (base.predict(corr_te), base.predict_proba(corr_te)[:, 0])
    categories = {"sex": ["F", "M"]}
    for variant in variants:
        designs = []
        for series, part in ((s_tr, p_tr), (s_te, p_te)):
            covs = covariance_table(participant_covariances(series), labels,
                                    part["participant_id"])
            designs.append(design_matrix(covs, part, (), protect=PROTECT, categories=categories))
        est = make_msica(variant, designs[0].n_protect, random_state)
        est.fit(designs[0].X, y_tr, groups=p_tr["site"].to_numpy())
        X_te, sites = designs[1].X, p_te["site"].to_numpy()
        proba = est.predict_proba(X_te, groups=sites)
        print(f"  {variant} chose: {est.best_params_}, {est.settings_}")
        out[variant] = (est.classes_[np.argmax(proba, axis=1)],
                        proba[:, list(est.classes_).index("ASD")])
    print("\n=== transfer: train on --data sites, test on --test-data sites (positive = ASD)")
    for name, (pred, score) in out.items():
        print(f"  {name}: balanced accuracy {balanced_accuracy_score(y_te, pred):.3f}, "
              f"AUC {roc_auc_score(y_te == 'ASD', score):.3f}")
        for site in sorted(set(p_te["site"])):
            m = p_te["site"].to_numpy() == site
            auc = roc_auc_score(y_te[m] == "ASD", score[m]) if len(set(y_te[m])) > 1 else np.nan
            print(f"      site {site:6s} n={m.sum():3d}  balanced accuracy "
                  f"{balanced_accuracy_score(y_te[m], pred[m]):.3f}  AUC {auc:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--test-data", type=Path, default=None,
                        help="train on the sites of --data, test on this folder's sites")
    parser.add_argument("--variants", nargs="*", default=["msica"], choices=list(VARIANTS),
                        help="msica variants run beside the baseline (first: permutation test)")
    parser.add_argument("--n-permutations", type=int, default=0,
                        help="permutations of msica's whole nested CV (each costs one full run)")
    parser.add_argument("--medication", action="store_true",
                        help="also classify medication (on vs off) among ASD participants")
    parser.add_argument("--timing-only", action="store_true",
                        help="only time the tangent space (msica vs nilearn) on the largest "
                        "leave-one-site-out training set, no classification")
    parser.add_argument("--no-peer-timing", action="store_true",
                        help="skip timing nilearn's tangent space (about a minute)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="outer folds / permutations in parallel (joblib)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random_state of the baseline and msica (the same in every run)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP threads for this run (1 avoids oversubscription)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    import torch

    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        _run(args)


def _run(args):
    series, participants, excluded = load_abide(args.data)
    print(f"ABIDE CC200 from {args.data}: {len(series)} participants kept, sites "
          f"{participants['site'].value_counts().to_dict()}; device cpu, float64 "
          f"(tangent geometric mean in float32), threads {args.threads}")
    for reason, n in excluded.items():
        print(f"  excluded {n:3d}: {reason}")
    if args.test_data is not None:
        test_series, test_participants, test_excluded = load_abide(args.test_data)
        print(f"test data {args.test_data}: {len(test_series)} kept, exclusions {test_excluded}")
        run_transfer((series, participants), (test_series, test_participants), args.variants,
                     random_state=args.seed)
        return
    run_loso(series, participants, "diagnosis", "ASD", None if args.timing_only else args.variants,
             args.n_permutations, args.n_jobs, not args.no_peer_timing, random_state=args.seed)
    if args.timing_only:
        return
    if args.medication:
        print("\nmedication (CURRENT_MED_STATUS 1=on vs 0=off, ASD participants only; "
              "empty, -9999 and '`' treated as missing)")
        run_loso(series, participants, "medication", "on", args.variants, args.n_permutations,
                 args.n_jobs, False, random_state=args.seed)


if __name__ == "__main__":
    main()
