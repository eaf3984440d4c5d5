"""Time the participant-level workflow per participant on a simulated dataset.

The peer is the same computation without Nipype: the ``pipeline`` calls the
workflow's nodes make (denoise, MOO-ICAR per scale, FNC), run in a plain loop,
so the ratio is the cost of the workflow engine, BIDS indexing and derivative
writing.

Example::

    python benchmarks/participant.py --n-subjects 4 --nprocs 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from nilearn.maskers import NiftiMasker

from workflows.bids.simulated import truth_templates


def make_data(root: Path, n_subjects: int, n_volumes: int, grid_mm: float) -> Path:
    """Simulate a BIDS dataset (with the truth template) under ``root``."""
    from workflows.bids.simulated import run_simulate

    return run_simulate(root / "bids", n_subjects=n_subjects, n_sites=2, n_volumes=n_volumes,
                        tr=2.0, grid_mm=grid_mm, seed=0)


def run_workflow(bids: Path, out: Path, nprocs: int) -> float:
    """Run ``msica participant`` in template mode; return the wall time."""
    from workflows.cli import run

    argv = [str(bids), str(out / "msica"), "participant", "-w", str(out / "work"),
            "--nprocs", str(nprocs)]
    for template, labels in truth_templates(bids):
        argv += ["--template", str(template), "--template-labels", str(labels)]
    start = time.perf_counter()
    code = run(argv)
    elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"msica participant exited with {code}")
    return elapsed


def run_plain(bids: Path) -> float:
    """The same science with direct ``pipeline`` calls; return the wall time."""
    from pipeline.denoise import denoise_bold
    from pipeline.fnc.dynamic import sliding_window_fnc
    from pipeline.fnc.static import static_fnc
    from pipeline.fnc.timecourse import postprocess
    from pipeline.ica.scica import SpatiallyConstrainedICA

    fmriprep = bids / "derivatives" / "fmriprep"
    templates = [nb.load(t) for t, _ in truth_templates(bids)]
    start = time.perf_counter()
    for bold in sorted(fmriprep.glob("sub-*/func/*_desc-preproc_bold.nii.gz")):
        mask = Path(str(bold).replace("desc-preproc_bold", "desc-brain_mask"))
        confounds = pd.read_csv(str(bold).split("_space-")[0] + "_desc-confounds_timeseries.tsv",
                                sep="\t")
        result = denoise_bold(nb.load(bold), nb.load(mask), str(bold), t_r=2.0)
        masker = NiftiMasker(mask_img=str(mask), standardize=None).fit()
        tcs = []
        for template in templates:
            est = SpatiallyConstrainedICA(masker.transform(template), device="cpu")
            tcs.append(est.fit(result.data).timecourses_)
        motion = confounds[["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]]
        cleaned = postprocess(np.hstack(tcs), 2.0, motion=motion.to_numpy())
        static_fnc(cleaned)
        sliding_window_fnc(cleaned)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=4)
    parser.add_argument("--n-volumes", type=int, default=150)
    parser.add_argument("--grid-mm", type=float, default=6.0)
    parser.add_argument("--nprocs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bids = make_data(root, args.n_subjects, args.n_volumes, args.grid_mm)
        plain = run_plain(bids)
        workflow = run_workflow(bids, root, args.nprocs)
    n = args.n_subjects
    print(f"device=cpu dtype=float64 participants={n} volumes={args.n_volumes} "
          f"grid={args.grid_mm} mm nprocs={args.nprocs}")
    print(f"plain pipeline calls : {plain:7.2f} s  ({plain / n:.2f} s/participant)")
    print(f"msica participant wf : {workflow:7.2f} s  ({workflow / n:.2f} s/participant)")
    print(f"ratio workflow/plain : {workflow / plain:.2f}")


if __name__ == "__main__":
    main()
