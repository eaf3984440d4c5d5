"""Benchmark per-participant back-reconstruction (MOO-ICAR, dual regression).

Cases
-----
1. ``coinstac``: the COINSTAC 10 mm runs (148 volumes, 2029 voxels) with the
   NeuroMark template (53 networks), as in GIFT's scICA. msica's MOO-ICAR
   (default and GIFT mode) against the peer, a plain NumPy loop over networks
   of GIFT's ``icatb_gigicar`` algorithm (the tests' transcription,
   ``tests/pipeline/ica/gift_gigicar.py``) timed in the same process. GIFT
   itself (Octave) cannot run here; the issue reports about 2.7 s per
   participant for it, printed next to our numbers.
2. ``mni3mm``: one synthetic participant on nilearn's MNI152 brain mask at
   3 mm (about 70k voxels), 200 volumes, ~100 networks over all scales.

Wall-clock and CPU time are both printed: the machine may be shared, so wall
time can be several times the CPU time divided by the number of threads.

Usage::

    python benchmarks/backrecon.py --n-participants 3
    python benchmarks/backrecon.py --skip-mni3mm --threads 1
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline.exceptions import ConvergenceWarning
from pipeline.ica.backrecon import dual_regression
from pipeline.ica.scica import SpatiallyConstrainedICA

GIFT_OCTAVE_SECONDS = 2.7  # per participant, COINSTAC runs, figure from the issue
RANDOM_STATE = 0
#: The peer runs GIFT's first PCA threshold only, as msica's GIFT mode does first.
EPS = np.finfo(np.float64).eps
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinstac_gica_10mm"
# The peer is the tests' independent transcription of GIFT's icatb_gigicar.m.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "pipeline" / "ica"))
from gift_gigicar import gig_icar  # noqa: E402


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_estimator(template, gift_compatible, device):
    return SpatiallyConstrainedICA(
        template, gift_compatible=gift_compatible, zscore=False, device=device
    )


def bench_coinstac(n_participants: int, device: str) -> None:
    import nibabel as nib
    import pandas as pd

    mask = nib.load(DATA / "mask.nii.gz").get_fdata() > 0
    template = nib.load(DATA / "NeuroMark.nii.gz").get_fdata()[mask].T
    files = pd.read_csv(DATA / "subjects.tsv", sep="\t")["file"][:n_participants]
    runs = [nib.load(DATA / f).get_fdata()[mask].T for f in files]
    print(f"\n[coinstac] {len(runs)} participants, data {runs[0].shape}, template "
          f"{template.shape}, float64, device={device}")
    make_estimator(template, False, device).fit(runs[0][:60])  # warm-up (torch init)
    rows = []
    for data in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours, t_ours, c_ours = _timed(lambda: make_estimator(template, False, device).fit(data))
        gift, t_gift, c_gift = _timed(lambda: make_estimator(template, True, device).fit(data))
        (peer, _, _), t_peer, c_peer = _timed(lambda: gig_icar(data, template, EPS))
        _, t_dr, c_dr = _timed(lambda: dual_regression(data, template))
        err = np.abs(gift.components_ - peer).max()
        rows.append((t_ours, c_ours, t_gift, c_gift, t_peer, c_peer, t_dr, c_dr, err,
                     np.median(ours.n_iter_)))
    a = np.median(np.array(rows), axis=0)
    print("median per participant        wall s    cpu s")
    print(f"  msica MOO-ICAR (default)    {a[0]:7.3f}  {a[1]:7.3f}  (median passes {a[9]:.0f})")
    print(f"  msica MOO-ICAR (gift mode)  {a[2]:7.3f}  {a[3]:7.3f}")
    print(f"  NumPy loop, GIFT algorithm  {a[4]:7.3f}  {a[5]:7.3f}  (peer)")
    print(f"  dual regression             {a[6]:7.3f}  {a[7]:7.3f}")
    print(f"  GIFT/Octave (issue figure)  {GIFT_OCTAVE_SECONDS:7.3f}")
    print(f"ratios (wall): peer/msica-default = {a[4] / a[0]:.1f}x, peer/msica-gift = "
          f"{a[4] / a[2]:.1f}x, GIFT-Octave/msica-default = {GIFT_OCTAVE_SECONDS / a[0]:.1f}x, "
          f"GIFT-Octave/msica-gift = {GIFT_OCTAVE_SECONDS / a[2]:.1f}x")
    print(f"gift mode vs NumPy peer: max |map difference| = {np.max([r[8] for r in rows]):.2e}")
    print(f"peak RSS so far: {_peak_mb():.0f} MB")


def bench_mni3mm(n_networks: int, n_volumes: int, device: str) -> None:
    from nilearn.datasets import load_mni152_brain_mask
    from scipy.ndimage import gaussian_filter

    mask = np.asarray(load_mni152_brain_mask(resolution=3).dataobj) > 0
    rng = np.random.RandomState(RANDOM_STATE)
    maps = np.empty((n_networks, int(mask.sum())))
    coords = np.argwhere(mask)
    for k in range(n_networks):  # smooth blobs around random in-mask centres
        vol = np.zeros(mask.shape)
        for centre in coords[rng.choice(len(coords), 3, replace=False)]:
            vol[tuple(centre)] = 1.0
        maps[k] = gaussian_filter(vol, 2.5)[mask]
    maps /= maps.std(axis=1, keepdims=True)
    subject_maps = maps + 0.3 * rng.randn(*maps.shape)
    data = rng.randn(n_volumes, n_networks) @ subject_maps + rng.randn(n_volumes, maps.shape[1])
    print(f"\n[mni3mm] data {data.shape} (MNI152 3 mm mask), {n_networks} networks, float64, "
          f"device={device}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est, t, c = _timed(lambda: make_estimator(maps, False, device).fit(data))
    r = [np.corrcoef(a, b)[0, 1] for a, b in zip(est.components_, subject_maps)]
    print(f"  msica MOO-ICAR (default)   wall {t:.2f} s, cpu {c:.2f} s, median passes "
          f"{np.median(est.n_iter_):.0f}, converged {int(est.converged_.sum())}/{n_networks}, "
          f"median r(true map) {np.median(r):.3f}")
    _, t, c = _timed(lambda: dual_regression(data, maps))
    print(f"  dual regression            wall {t:.2f} s, cpu {c:.2f} s")
    print(f"peak RSS so far: {_peak_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-participants", type=int, default=3)
    parser.add_argument("--n-networks", type=int, default=100)
    parser.add_argument("--n-volumes", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and BLAS threads for this benchmark process only "
                        "(1 avoids OpenMP spin-waits when the cores are oversubscribed)")
    parser.add_argument("--skip-coinstac", action="store_true")
    parser.add_argument("--skip-mni3mm", action="store_true")
    args = parser.parse_args()
    if args.threads:  # this benchmark process only (torch and the BLAS behind numpy)
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    if not args.skip_coinstac:
        bench_coinstac(args.n_participants, args.device)
    if not args.skip_mni3mm:
        bench_mni3mm(args.n_networks, args.n_volumes, args.device)


if __name__ == "__main__":
    main()
