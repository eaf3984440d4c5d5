"""Benchmark: msica GroupICA vs nilearn CanICA vs scikit-learn FastICA (same process).

Every method gets the same denoised data, one after the other in one process:

- ``msica ICASSO x10``: ``GroupICA(k, n_runs=10)``, what ``msica`` users get
  (``--icasso-runs 10``): subject PCA (``2k`` PCs), exact group PCA, 10
  Infomax runs from random starts, ICASSO clustering, centrotypes. This is
  the reference row (like CanICA, which runs FastICA ``n_init=10`` times).
- ``msica 1 run``: ``GroupICA(k)`` (the estimator's default, one Infomax run).
- ``nilearn CanICA``: ``CanICA(k)`` with nilearn's defaults (per-subject
  randomized SVD, CCA, 10 FastICA runs, thresholded maps); ``smoothing_fwhm=None``.
  It gets in-memory NIfTI images built before its timer starts, so neither
  image building nor disk I/O is counted.
- ``sklearn PCA+FastICA``: temporal concatenation of all subjects, scikit-
  learn's randomized PCA to ``k`` whitened components, then ``FastICA``
  (logcosh, parallel) on them. (``FastICA``'s own whitening takes a full SVD
  or eigendecomposition of the ``(sum T_i)``-dimensional data: hours at 3 mm.)

Time is wall-clock. Peak memory is the process's resident high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs`` before each method, after
``gc.collect`` and ``malloc_trim``) minus the resident size at the start: it
counts numpy and torch buffers without sampling. Recovery:

- ``sim``: simulated cohort (``pipeline.simulate``), mean Hungarian-matched
  |r| with the planted maps at the finest scale;
- ``coinstac``: the 40-subject COINSTAC 10 mm data, number of components
  matching a NeuroMark network at |r| > 0.4 (and median best |r|).

Usage::

    python benchmarks/ica.py --dataset sim --n-subjects 40 --grid-mm 3
    python benchmarks/ica.py --dataset sim --n-subjects 24 --grid-mm 6 --threads 1
    python benchmarks/ica.py --dataset coinstac --n-components 20
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import time
from pathlib import Path

import numpy as np

RANDOM_STATE = 0
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(func):
    """Run ``func()``; return (result, seconds, peak resident increase in MiB)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - t0
    return result, elapsed, (_status_kib("VmHWM") - base) / 1024


def _clean(subject):
    """Percent signal change, regress motion, CSF, WM and a quadratic drift (float32)."""
    bold = subject.bold
    psc = bold / bold.mean(axis=0, dtype=np.float64).astype(np.float32)
    psc -= 1.0
    psc *= 100.0
    conf = subject.confounds
    cols = [c for c in conf.columns if c.startswith(("trans_", "rot_")) and "power2" not in c]
    design = conf[cols + ["csf", "white_matter"]].fillna(0.0).to_numpy()
    tt = np.linspace(-1, 1, len(design))
    design = np.column_stack([np.ones_like(tt), tt, tt**2, design])
    beta = np.linalg.pinv(design).astype(np.float32) @ psc
    psc -= design.astype(np.float32) @ beta
    return psc


def make_data(dataset: str, n_subjects: int, grid_mm: float):
    """Return (arrays, mask, affine, truth) with truth a dict for scoring."""
    import nibabel as nib

    if dataset == "sim":
        from pipeline.simulate import simulate_cohort

        cohort = simulate_cohort(n_subjects=n_subjects, grid_mm=grid_mm, random_state=RANDOM_STATE)
        arrays = []
        while cohort.subjects:  # free each raw subject once cleaned
            arrays.append(_clean(cohort.subjects.pop(0)))
        scale = cohort.scales[-1]
        return arrays, cohort.mask, cohort.affine, {"maps": cohort.group_maps[scale],
                                                    "n_components": scale}
    root = SHARED / "coinstac_gica_10mm"
    mask_img = nib.load(root / "mask.nii.gz")
    mask = mask_img.get_fdata() > 0.5
    files = sorted(root.glob("local*/rtswa_*.nii.gz"))[:n_subjects]
    arrays = [nib.load(f).get_fdata(dtype=np.float32)[mask].T for f in files]
    template = nib.load(root / "NeuroMark.nii.gz").get_fdata()[mask].T
    return arrays, mask, mask_img.affine, {"template": template}


def score(components, truth) -> tuple[float, str]:
    from pipeline.ica._matching import match_components
    from pipeline.ica.multiscale import match_to_template

    if "maps" in truth:
        r = match_components(components, truth["maps"])[2]
        return float(r.mean()), f"mean matched |r| = {r.mean():.3f}"
    m = match_to_template(components, truth["template"])
    return float(m["matched"].sum()), (f"NeuroMark matches |r|>0.4 = {int(m['matched'].sum())}/"
                                       f"{len(m)}, median best |r| = {m['r'].median():.3f}")


def run_msica(arrays, n_components, algorithm, n_runs):
    from pipeline.ica.group import GroupICA

    return GroupICA(n_components, algorithm=algorithm, n_runs=n_runs,
                    random_state=RANDOM_STATE, device="auto").fit(arrays).components_


def to_images(arrays, mask, affine):
    """One in-memory 4D float32 NIfTI image per subject (built outside CanICA's timer)."""
    import nibabel as nib

    imgs = []
    for arr in arrays:
        vol = np.zeros(mask.shape + (arr.shape[0],), dtype=np.float32)
        vol[mask] = arr.T
        imgs.append(nib.Nifti1Image(vol, affine))
    return imgs, nib.Nifti1Image(mask.astype(np.uint8), affine)


def run_canica(imgs, mask_img, n_components):
    from nilearn.decomposition import CanICA

    canica = CanICA(n_components=n_components, mask=mask_img, smoothing_fwhm=None,
                    random_state=RANDOM_STATE, verbose=0)
    canica.fit(imgs)
    return canica.masker_.transform(canica.components_img_)


def run_sklearn(arrays, n_components):
    from sklearn.decomposition import PCA, FastICA

    stacked = np.vstack(arrays).T  # spatial ICA: voxels are samples, volumes are features
    white = PCA(n_components, whiten=True, svd_solver="randomized",
                random_state=RANDOM_STATE).fit_transform(stacked)
    del stacked
    ica = FastICA(whiten=False, max_iter=400, random_state=RANDOM_STATE)
    return ica.fit_transform(white).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["sim", "coinstac"], default="sim")
    parser.add_argument("--n-subjects", type=int, default=24)
    parser.add_argument("--grid-mm", type=float, default=6.0)
    parser.add_argument("--n-components", type=int, default=None,
                        help="model order (default: finest simulated scale, or 20 on coinstac)")
    parser.add_argument("--algorithm", choices=["infomax", "fastica"], default="infomax")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS and torch threads for every method (default: libraries' own)")
    args = parser.parse_args()

    import warnings

    import torch
    from threadpoolctl import threadpool_limits

    from pipeline._validation import resolve_device

    if args.threads is not None:
        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    arrays, mask, affine, truth = make_data(args.dataset, args.n_subjects, args.grid_mm)
    k = args.n_components or truth.get("n_components", 20)
    print(f"dataset={args.dataset} grid={args.grid_mm} mm subjects={len(arrays)} "
          f"volumes={arrays[0].shape[0]} voxels={arrays[0].shape[1]} n_components={k} "
          f"device={resolve_device('auto')} data={arrays[0].dtype} torch={torch.__version__} "
          f"torch threads={torch.get_num_threads()} BLAS threads={args.threads or 'default'} "
          f"(data made in {time.perf_counter() - t0:.0f} s)", flush=True)

    def canica():
        imgs, mask_img = to_images(arrays, mask, affine)
        return measure(lambda: run_canica(imgs, mask_img, k))

    runs = {
        f"msica ICASSO x10 ({args.algorithm})": lambda: measure(
            lambda: run_msica(arrays, k, args.algorithm, 10)),
        f"msica 1 run ({args.algorithm})": lambda: measure(
            lambda: run_msica(arrays, k, args.algorithm, 1)),
        "nilearn CanICA (n_init=10)": canica,
        "sklearn PCA+FastICA (concat)": lambda: measure(lambda: run_sklearn(arrays, k)),
    }
    results = {}
    for name, func in runs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comps, seconds, mem = func()
        value, text = score(comps, truth)
        results[name] = (seconds, mem, value, text)
        print(f"  done {name}: {seconds:.1f} s", flush=True)
    ref = results[next(iter(results))]
    print(f"{'method':32s} {'time s':>8s} {'x msica':>8s} {'peak MiB':>9s} {'x msica':>8s}  "
          "recovery")
    for name, (sec, mem, value, text) in results.items():
        print(f"{name:32s} {sec:8.1f} {sec / ref[0]:8.2f} {mem:9.0f} "
              f"{mem / max(ref[1], 1e-9):8.2f}  {text} (x msica {value / max(ref[2], 1e-9):.2f})")


if __name__ == "__main__":
    main()
