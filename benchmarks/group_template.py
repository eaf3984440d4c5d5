"""The template-mode group level at growing cohort sizes: wall, CPU and peak memory.

Memory must not grow with the number of participants beyond the tables that hold
them (FNC edges, dFNC windows). This script simulates one cohort of 24 participants
(``msica simulate``), runs its participant level once in template mode (the
simulator's truth maps as the templates, as ``msica demo`` does), then copies those
participants' derivatives under new labels to reach each size (participants.tsv
repeated, labels and file names rewritten), and runs the group level (targets
``diagnosis``, no permutations, no reports) in a child process. It prints wall and
CPU seconds and the peak RSS of the largest process, and that peak as a ratio to
the first size's.

Example::

    python benchmarks/group_template.py /tmp/gt --n-participants 48 240 960

The base cohort under ``ROOT/base`` is reused; each size is rebuilt.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd
from group_graph import msica, run_measured  # this folder's sibling script

BASE_PARTICIPANTS = 24


def prepare_base(root: Path) -> Path:
    """Simulate the base cohort and run its participant level once (template mode)."""
    from workflows.bids.simulated import truth_template_options

    base = root / "base"
    if (base / "participant.done").is_file():
        return base
    shutil.rmtree(base, ignore_errors=True)
    msica("simulate", base / "bids", "--n-subjects", BASE_PARTICIPANTS, "--seed", 0)
    msica(base / "bids", base / "out", "participant", "-w", base / "work", "--nprocs", 2,
           "--no-reports", *truth_template_options(base / "bids"))
    (base / "participant.done").touch()
    return base


def _copy_renamed(source: Path, target: Path, old: str, new: str) -> None:
    for path in source.rglob("*"):
        if not path.is_file():
            continue
        dest = target / path.relative_to(source).parent / path.name.replace(old, new)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".json", ".tsv"):
            dest.write_text(path.read_text().replace(f"{old}_", f"{new}_")
                            .replace(f"{old}/", f"{new}/"))
        else:
            shutil.copyfile(path, dest)


def tile(base: Path, folder: Path, n_participants: int) -> None:
    """``n_participants`` copies of the base cohort's participants under new labels."""
    shutil.rmtree(folder, ignore_errors=True)
    bids, out = folder / "bids", folder / "out"
    bids.mkdir(parents=True)
    out.mkdir()
    shutil.copyfile(base / "bids" / "dataset_description.json", bids / "dataset_description.json")
    shutil.copyfile(base / "out" / "dataset_description.json", out / "dataset_description.json")
    table = pd.read_csv(base / "bids" / "participants.tsv", sep="\t", dtype=str,
                        keep_default_na=False)
    rows = []
    for index in range(n_participants):
        row = table.iloc[index % len(table)].copy()
        old, new = row["participant_id"], f"sub-{index + 1:05d}"
        row["participant_id"] = new
        rows.append(row)
        _copy_renamed(base / "bids" / old, bids / new, old, new)
        _copy_renamed(base / "out" / old, out / new, old, new)
    pd.DataFrame(rows).to_csv(bids / "participants.tsv", sep="\t", index=False)


def run_group(folder: Path, nprocs: int) -> dict:
    """The group level in a child process: wall, CPU (it and its workers), largest peak RSS."""
    return run_measured(folder / "bids", folder / "out", "group", "-w", folder / "work",
                        "--nprocs", nprocs, "--targets", "diagnosis", "--n-permutations", 0,
                        "--no-reports")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder of the cohorts (the base is kept)")
    parser.add_argument("--n-participants", type=int, nargs="+", default=[48, 240],
                        help="sizes, smallest first (the peak is the largest so far)")
    parser.add_argument("--nprocs", type=int, default=2)
    args = parser.parse_args()
    base = prepare_base(args.root)
    print(f"{'participants':>12} {'wall s':>8} {'CPU s':>8} {'peak RSS GB':>11} {'x first':>8}")
    first = None
    for n_participants in args.n_participants:
        folder = args.root / f"n{n_participants}"
        tile(base, folder, n_participants)
        res = run_group(folder, args.nprocs)
        first = first or res["rss_gb"]
        print(f"{n_participants:>12} {res['wall']:>8.1f} {res['cpu']:>8.1f} "
              f"{res['rss_gb']:>11.2f} {res['rss_gb'] / first:>8.2f}", flush=True)
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
