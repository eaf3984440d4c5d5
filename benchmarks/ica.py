"""Benchmark: msica GroupICA vs nilearn CanICA vs scikit-learn FastICA (same process).

Each method gets the same denoised data. msica and sklearn get masked arrays;
CanICA gets the NIfTI images (its own masking is part of its cost). For every
method the script prints wall time, peak resident memory above the baseline
(sampled from /proc every 10 ms: counts numpy *and* torch buffers) and truth
recovery, each also as a ratio to msica.

- ``sim``: simulated cohort (``pipeline.simulate``), recovery = mean Hungarian-
  matched |r| with the planted maps at the finest scale.
- ``coinstac``: the 40-subject COINSTAC 10 mm data, recovery = number of
  components matching a NeuroMark network at |r| > 0.4 (and median best |r|).

Usage::

    python benchmarks/ica.py --dataset sim --n-subjects 24 --grid-mm 6
    python benchmarks/ica.py --dataset coinstac --n-components 20
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np

RANDOM_STATE = 0
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(func):
    """Run ``func()``; return (result, seconds, peak RSS increase in MiB)."""
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    return result, elapsed, (max(peak[0], _rss_bytes()) - base) / 2**20


def _clean(subject):
    """Percent signal change, regress motion, CSF, WM and a quadratic drift."""
    bold = subject.bold.astype(np.float64)
    psc = (bold / bold.mean(axis=0) - 1.0) * 100.0
    conf = subject.confounds
    cols = [c for c in conf.columns if c.startswith(("trans_", "rot_")) and "power2" not in c]
    design = conf[cols + ["csf", "white_matter"]].fillna(0.0).to_numpy()
    tt = np.linspace(-1, 1, len(design))
    design = np.column_stack([np.ones_like(tt), tt, tt**2, design])
    return (psc - design @ np.linalg.lstsq(design, psc, rcond=None)[0]).astype(np.float32)


def make_data(dataset: str, n_subjects: int, grid_mm: float):
    """Return (arrays, mask, affine, truth) with truth a dict for scoring."""
    import nibabel as nib

    if dataset == "sim":
        from pipeline.simulate import simulate_cohort

        cohort = simulate_cohort(n_subjects=n_subjects, grid_mm=grid_mm, random_state=RANDOM_STATE)
        arrays = [_clean(s) for s in cohort.subjects]
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


def run_msica(arrays, n_components, algorithm):
    from pipeline.ica.group import GroupICA

    return GroupICA(n_components, algorithm=algorithm, random_state=RANDOM_STATE,
                    device="auto").fit(arrays).components_


def run_canica(arrays, mask, affine, n_components):
    import nibabel as nib
    from nilearn.decomposition import CanICA

    imgs = []
    for arr in arrays:
        vol = np.zeros(mask.shape + (arr.shape[0],), dtype=np.float32)
        vol[mask] = arr.T
        imgs.append(nib.Nifti1Image(vol, affine))
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    canica = CanICA(n_components=n_components, mask=mask_img, smoothing_fwhm=None,
                    random_state=RANDOM_STATE, verbose=0)
    canica.fit(imgs)
    return canica.masker_.transform(canica.components_img_)


def run_sklearn(arrays, n_components):
    from sklearn.decomposition import FastICA

    stacked = np.vstack([a - a.mean(axis=0) for a in arrays]).astype(np.float64)
    ica = FastICA(n_components=n_components, whiten="unit-variance", random_state=RANDOM_STATE,
                  max_iter=400)
    return ica.fit_transform(stacked.T).T  # spatial ICA: voxels are samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["sim", "coinstac"], default="sim")
    parser.add_argument("--n-subjects", type=int, default=24)
    parser.add_argument("--grid-mm", type=float, default=6.0)
    parser.add_argument("--n-components", type=int, default=None,
                        help="model order (default: finest simulated scale, or 20 on coinstac)")
    parser.add_argument("--algorithm", choices=["infomax", "fastica"], default="infomax")
    args = parser.parse_args()

    import warnings

    import torch

    from pipeline._validation import resolve_device

    arrays, mask, affine, truth = make_data(args.dataset, args.n_subjects, args.grid_mm)
    k = args.n_components or truth.get("n_components", 20)
    print(f"dataset={args.dataset} subjects={len(arrays)} volumes={arrays[0].shape[0]} "
          f"voxels={arrays[0].shape[1]} n_components={k} device={resolve_device('auto')} "
          f"ICA dtype=float64 torch={torch.__version__} threads={torch.get_num_threads()}")
    runs = {
        f"msica GroupICA ({args.algorithm})": lambda: run_msica(arrays, k, args.algorithm),
        "nilearn CanICA": lambda: run_canica(arrays, mask, affine, k),
        "sklearn FastICA (concat)": lambda: run_sklearn(arrays, k),
    }
    results = {}
    for name, func in runs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comps, seconds, mem = measure(func)
        value, text = score(comps, truth)
        results[name] = (seconds, mem, value, text)
    ref = results[next(iter(results))]
    print(f"{'method':32s} {'time s':>8s} {'x msica':>8s} {'peak MiB':>9s} {'x msica':>8s}  recovery")
    for name, (sec, mem, value, text) in results.items():
        print(f"{name:32s} {sec:8.1f} {sec / ref[0]:8.2f} {mem:9.0f} "
              f"{mem / max(ref[1], 1e-9):8.2f}  {text} (x msica {value / max(ref[2], 1e-9):.2f})")


if __name__ == "__main__":
    main()
