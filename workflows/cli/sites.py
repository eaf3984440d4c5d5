"""``msica sites``: train the FNC classifier across sites without pooling data.

Each site is one local process (gloo on 127.0.0.1, see
:mod:`pipeline.distributed.launch`); the three gradient exchanges (dsgd, dad,
rankdad) are run in turn from the same initial weights and compared on
held-out accuracy and bytes sent per step.

Data: either a simulated cohort (:func:`pipeline.simulate.simulate_cohort`;
features = upper triangle of each subject's true static FNC ``subject.fnc``,
label = ``participants.diagnosis``), or an msica group feature table
(``group/desc-fnc_features.tsv``: covariate columns including ``site`` and the
label column, then the edge columns ``<a>__<b>``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.exceptions import InputDataError
from pipeline.fnc.names import edge_name, is_edge
from workflows.cli.base import MsicaParser

__all__ = ["load_feature_table", "sites_command", "simulated_sites", "split_sites"]

LOGGER = logging.getLogger("msica.workflows")


def simulated_sites(n_subjects: int, n_sites: int, *, effect_size: float = 1.0,
                    random_state: int = 0) -> pd.DataFrame:
    """Feature table (site, diagnosis, FNC edges) of a simulated cohort."""
    from pipeline.simulate import simulate_cohort

    cohort = simulate_cohort(n_subjects=n_subjects, n_sites=n_sites, n_volumes=60,
                             grid_mm=12.0, effect_size=effect_size, random_state=random_state)
    iu = np.triu_indices(cohort.subjects[0].fnc.shape[0], k=1)
    X = np.stack([s.fnc[iu] for s in cohort.subjects])
    table = pd.DataFrame(X, columns=[edge_name(f"e{i}", j) for i, j in zip(*iu)])
    table.insert(0, "diagnosis", cohort.participants["diagnosis"].to_numpy())
    table.insert(0, "site", cohort.participants["site"].to_numpy())
    table.index = pd.Index(cohort.participants["participant_id"], name="participant_id")
    return table


def load_feature_table(path: Path, target: str) -> pd.DataFrame:
    """Read ``desc-fnc_features.tsv`` keeping ``site``, ``target`` and the edge columns.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InputDataError
        If ``site``/``target`` or edge columns (``<a>__<b>``) are missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--features: no file at {path}; run the group level first.")
    table = pd.read_csv(path, sep="\t", index_col=0, na_values="n/a")
    edges = [c for c in table.columns if is_edge(c)]
    missing = [c for c in ("site", target) if c not in table.columns]
    if missing or not edges:
        raise InputDataError(
            f"{path} must have columns 'site', '{target}' and FNC edges '<a>__<b>'; missing "
            f"{missing or 'edge columns'}. Join participants.tsv at the group level."
        )
    table = table.dropna(subset=["site", target, *edges])
    return table[["site", target, *edges]].rename(columns={target: "diagnosis"})


def split_sites(table: pd.DataFrame, test_fraction: float, random_state: int):
    """Per site, a stratified train/test split of features and integer labels."""
    from sklearn.model_selection import train_test_split

    edges = [c for c in table.columns if is_edge(c)]
    classes = sorted(table["diagnosis"].astype(str).unique())
    if len(classes) < 2:
        raise InputDataError(f"the label column has one class only ({classes}); need two or more.")
    out = ([], [], [], [])
    sites = sorted(table["site"].astype(str).unique())
    for s in sites:
        part = table[table["site"].astype(str) == s]
        X = part[edges].to_numpy(dtype=float)
        y = np.searchsorted(classes, part["diagnosis"].astype(str).to_numpy())
        strat = y if np.bincount(y).min() >= 2 else None
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_fraction, stratify=strat,
                                              random_state=random_state)
        for lst, arr in zip(out, (Xtr, ytr, Xte, yte)):
            lst.append(arr)
    return sites, classes, out


def _parser() -> MsicaParser:
    p = MsicaParser(
        prog="msica sites",
        description="Train the FNC classifier across sites (one process each) with dsgd, dAD "
                    "and rank-dAD; report accuracy and bytes sent per step.")
    p.add_argument("--features", type=Path, default=None,
                   help="group/desc-fnc_features.tsv; simulate a cohort when omitted")
    p.add_argument("--target", default="diagnosis", help="label column of --features")
    p.add_argument("--n-subjects", type=int, default=60)
    p.add_argument("--n-sites", type=int, default=3)
    p.add_argument("--effect-size", type=float, default=1.0,
                   help="planted diagnosis effect of the simulated cohort")
    p.add_argument("--modes", nargs="+", default=["dsgd", "dad", "rankdad"],
                   choices=["dsgd", "dad", "rankdad"])
    p.add_argument("--rank", type=int, default=2, help="rank of the rankdad factors")
    p.add_argument("--energy", type=float, default=None,
                   help="rankdad: choose the rank per layer from this spectrum energy")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8, help="rows per site per step")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--hidden", type=int, nargs="+", default=[64])
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for all modes")
    p.add_argument("--out", type=Path, default=None, help="write the summary as TSV here")
    return p


def sites_command(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``msica sites``; returns the process exit code.

    Examples
    --------
    ``msica sites --n-subjects 60 --n-sites 3 --rank 2`` (simulated cohort) or
    ``msica sites --features out/group/desc-fnc_features.tsv``.
    """
    from pipeline.distributed import run_local
    from workflows.exit_codes import ExitCode, exit_code_for

    opts = _parser().parse_args(argv)
    try:
        if opts.features is not None:
            table = load_feature_table(opts.features, opts.target)
        else:
            table = simulated_sites(opts.n_subjects, opts.n_sites,
                                    effect_size=opts.effect_size, random_state=opts.seed)
        sites, classes, (Xtr, ytr, Xte, yte) = split_sites(table, opts.test_fraction, opts.seed)
        common = dict(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr,
                      hidden=tuple(opts.hidden), random_state=opts.seed, record_spectra=False)
        configs = [dict(mode=m, **common, **({"rank_r": opts.rank, "energy": opts.energy}
                                             if m == "rankdad" else {})) for m in opts.modes]
        results = run_local(len(sites), Xtr, ytr, configs=configs, X_test_sites=Xte,
                            y_test_sites=yte, timeout=opts.timeout)
    except Exception as exc:  # noqa: BLE001 - mapped to an exit code, reported
        LOGGER.error("%s", exc)
        sys.stderr.write(f"msica sites: error: {exc}\n")
        return int(exit_code_for(exc))
    rows = []
    for cfg, res in zip(configs, results):
        r0 = res[0]
        rows.append({"mode": cfg["mode"], "rank": cfg.get("rank_r", "n/a"),
                     "train_accuracy": r0["train_accuracy"], "test_accuracy": r0["test_accuracy"],
                     "bytes_per_step_per_site": int(np.mean(r0["bytes_per_step"])),
                     "total_bytes_all_sites": int(sum(sum(s["bytes_per_step"]) for s in res)),
                     "seconds_per_step": float(np.median(r0["step_seconds"]))})
    summary = pd.DataFrame(rows)
    base = summary.loc[summary["mode"] == "dsgd", "bytes_per_step_per_site"]
    if len(base):
        summary["bytes_ratio_to_dsgd"] = summary["bytes_per_step_per_site"] / float(base.iloc[0])
    sys.stdout.write(
        f"{len(sites)} sites ({', '.join(sites)}), classes {classes}, "
        f"{sum(len(y) for y in ytr)} train / {sum(len(y) for y in yte)} test rows, "
        f"{Xtr[0].shape[1]} features\n")
    sys.stdout.write(summary.to_string(index=False) + "\n")
    if opts.out is not None:
        summary.to_csv(opts.out, sep="\t", index=False)
    return int(ExitCode.OK)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(sites_command())
