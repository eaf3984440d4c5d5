"""Cohort-scale benchmark: the participant level and the group PCA, each case in its own process.

Every case runs in a fresh Python process (``python benchmarks/scale.py _case ...``) so that
its peak resident memory (``ru_maxrss`` of the process and of any process it waited for) is
its own; the figures are printed as ratios to a floor or peer measured in the same run.

``participant`` -- one simulated fMRIPrep run per grid (6/3/2 mm: about 8.7k/70k/235k brain
voxels) and length (150/300/600/1200 volumes), template mode with the simulator's 4 + 10
networks (denoising "simple", MOO-ICAR per scale, static and dynamic FNC):

- ``read``: one read of the preprocessed BOLD (``nibabel`` ``get_fdata(float32)``), the floor;
- ``nilearn``: ``nilearn.signal.clean`` on the same masked float64 array with the parameters of
  ``denoise_bold`` (the call msica made before issue 15), timed around the call only: the peer;
- ``denoise``: ``pipeline.denoise.denoise_bold`` alone (reads the files itself);
- ``direct``: the participant level's pipeline calls without Nipype (denoise, MOO-ICAR per
  scale, time-course post-processing, static and dynamic FNC);
- ``workflow``: ``msica participant`` (``--plugin Linear --nprocs 1``: one process, so its
  peak is the run's peak) with the denoising of ``denoise`` (strategy "simple", high-pass,
  detrending, z-scoring; msica's defaults denoise nothing), the reports' share of CPU timed
  apart;
- ``datadriven``: the same, in data-driven mode (``--model-orders 25 50``: denoising and the
  subject PCA that the group level reads, written to the work directory); its only ratio is
  to one read.

Bytes per voxel x volume = peak RSS / (brain voxels x volumes); ``above imports`` subtracts the
resident size after the imports (the libraries' own ~0.3-0.5 GB).

``group-pca`` -- the group PCA alone on N synthetic subject-PCA blocks at 3 mm (about 70k
voxels; ``2 * max(orders)`` rows each, float32 ``.npy`` files read one at a time by loader
callables): peak RSS, passes, CPU s per pass, and the ratios of CPU and wall time to one read
of every block times the passes. To keep the disk use bounded the files hold ``--unique``
distinct blocks and subject ``i`` reads block ``i % unique`` with its own seeded sign flips (so
no two subjects are equal); one read of the data is measured on exactly the same loaders.
``--reader msica`` reads the same blocks from subject-PCA files as the participant level writes
them (``.npz``, through ``pipeline.ica.persistence.read_subject_pcas``, the group level's
reader: the archive read, then the group mask's columns gathered) instead of ``.npy``.

Examples::

    python benchmarks/scale.py participant --grid-mm 6 3 --n-volumes 150 300
    python benchmarks/scale.py participant --grid-mm 2 --n-volumes 1200 --skip workflow
    python benchmarks/scale.py group-pca --n-subjects 100 300 1000 --orders 25 50 75 100
    python benchmarks/scale.py group-pca --n-subjects 100 300 --reader msica

(The data-driven group level at 24/96/300 participants and the permutation tests of issue 15
items 3-4 are benchmarked separately; see benchmarks/participant.py and benchmarks/classify.py.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RANDOM_STATE = 0
T_R = 2.0
PARTICIPANT_STEPS = ("read", "nilearn", "denoise", "direct", "workflow", "datadriven")
#: Model orders of the ``datadriven`` step (its subject PCA keeps twice the largest).
DATA_DRIVEN_ORDERS = (25, 50)


# --- measurement -------------------------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not in /proc/self/status")


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _peak_kib() -> int:
    """Peak resident size of this process (``VmHWM``) and of any child it waited for.

    Not ``ru_maxrss`` of ``RUSAGE_SELF``: Linux carries a process's high-water mark
    across ``exec``, so a case started by a large parent would report the parent's size.
    """
    with open("/proc/self/status") as f:
        own = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def _pin_threads(n: int) -> None:
    from threadpoolctl import threadpool_limits
    import torch

    threadpool_limits(n)
    torch.set_num_threads(n)


def _run_case(kind: str, params: dict, threads: int) -> dict:
    """Run one case in a fresh process and return its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "_case", kind, json.dumps(params), str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"case {kind} {params} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# --- participant level -------------------------------------------------------------------------


def make_participant_data(root: Path, grid_mm: float, n_volumes: int,
                          tile_from: int | None = None) -> Path:
    """Simulate one participant's fMRIPrep run (BIDS, with the truth template) under ``root``.

    With ``tile_from`` (a divisor of ``n_volumes``), the run is the ``tile_from``-volume
    simulation repeated in time (its images and confounds rows): the same sizes at a
    fraction of the simulator's time and memory (a 2 mm, 1200-volume cohort of the four
    participants the simulator needs takes about 10 GB).
    """
    import dataclasses

    from pipeline.simulate import simulate_cohort
    from workflows.bids.simulated import write_bids_dataset

    bids = root / f"grid{grid_mm:g}_vol{n_volumes}"
    if (bids / "dataset_description.json").is_file():
        return bids
    if tile_from and tile_from < n_volumes:
        return _tiled(make_participant_data(root, grid_mm, tile_from), bids,
                      n_volumes // tile_from)
    cohort = simulate_cohort(n_subjects=4, n_sites=1, n_volumes=n_volumes, t_r=T_R,
                             grid_mm=grid_mm, random_state=RANDOM_STATE)
    cohort = dataclasses.replace(cohort, subjects=cohort.subjects[:1],
                                 participants=cohort.participants.iloc[:1])
    return write_bids_dataset(cohort, bids)


def _tiled(source: Path, bids: Path, repeats: int) -> Path:
    """Copy of the dataset ``source`` whose 4-D images and confounds are repeated in time."""
    import shutil

    import nibabel as nib
    import numpy as np
    import pandas as pd

    staging = bids.with_name(bids.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    for path in staging.rglob("*_bold.nii.gz"):
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
        nib.Nifti1Image(np.concatenate([data] * repeats, axis=3), img.affine,
                        img.header).to_filename(path)
        del data
    for path in staging.rglob("*_desc-confounds_timeseries.tsv"):
        table = pd.concat([pd.read_csv(path, sep="\t")] * repeats, ignore_index=True)
        # temporal derivatives recomputed over the seams (n/a only in the first row)
        for column in [c for c in table.columns if c.endswith("_derivative1")]:
            table[column] = table[column.removesuffix("_derivative1")].diff()
        for column in [c for c in table.columns if c.endswith("_derivative1_power2")]:
            table[column] = table[column.removesuffix("_power2")] ** 2
        table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    staging.rename(bids)
    return bids


def _run_files(bids: Path) -> dict:
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    bold = next(func.glob("*_desc-preproc_bold.nii.gz"))
    return {"bold": bold, "mask": Path(str(bold).replace("desc-preproc_bold", "desc-brain_mask")),
            "confounds": next(func.glob("*_desc-confounds_timeseries.tsv"))}


def _step_read(bids: Path) -> dict:
    import nibabel as nib
    import numpy as np

    files = _run_files(bids)
    t0 = _cpu_s()
    data = nib.load(files["bold"]).get_fdata(dtype=np.float32)
    return {"cpu_s": _cpu_s() - t0, "shape": list(data.shape)}


def _step_nilearn(bids: Path) -> dict:
    import numpy as np
    from nilearn import signal
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from nilearn.masking import apply_mask

    files = _run_files(bids)
    regressors, sample_mask = load_confounds_strategy(str(files["bold"]), denoise_strategy="simple")
    raw = apply_mask(str(files["bold"]), str(files["mask"])).astype(np.float64)
    t0 = _cpu_s()
    cleaned = signal.clean(raw, detrend=True, standardize=None, sample_mask=sample_mask,
                           confounds=regressors.to_numpy(dtype=np.float64),
                           standardize_confounds=True, filter="butterworth", high_pass=0.01,
                           t_r=T_R)
    cleaned = signal.clean(cleaned, detrend=False, standardize="zscore_sample", filter=False,
                           t_r=T_R)
    return {"cpu_s": _cpu_s() - t0, "n_voxels": int(raw.shape[1])}


def _denoise(files: dict):
    from pipeline.denoise import denoise_bold

    return denoise_bold(files["bold"], files["mask"], files["bold"], t_r=T_R)


def _step_denoise(bids: Path) -> dict:
    files = _run_files(bids)
    t0 = _cpu_s()
    result = _denoise(files)
    return {"cpu_s": _cpu_s() - t0, "n_voxels": int(result.data.shape[1])}


def _step_direct(bids: Path) -> dict:
    import numpy as np
    import pandas as pd
    from nilearn.maskers import NiftiMasker

    from pipeline.fnc.dynamic import sliding_window_fnc
    from pipeline.fnc.static import static_fnc
    from pipeline.fnc.timecourse import postprocess
    from pipeline.ica.scica import SpatiallyConstrainedICA
    from workflows.bids.simulated import truth_templates

    files = _run_files(bids)
    templates = [t for t, _ in truth_templates(bids)]
    t0 = _cpu_s()
    result = _denoise(files)
    masker = NiftiMasker(mask_img=str(files["mask"]), standardize=None).fit()
    tcs = []
    for template in templates:
        est = SpatiallyConstrainedICA(masker.transform(template), device="cpu")
        tcs.append(est.fit(result.data).timecourses_)
    motion = pd.read_csv(files["confounds"], sep="\t")[
        ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]].to_numpy()
    cleaned = postprocess(np.hstack(tcs), T_R, motion=motion[result.sample_mask])
    static_fnc(cleaned)
    sliding_window_fnc(cleaned)
    return {"cpu_s": _cpu_s() - t0, "n_voxels": int(result.data.shape[1])}


def _run_participant_level(bids: Path, mode_args: list[str]) -> dict:
    """``msica participant`` on sub-01 in one process, the reports' CPU and peak timed apart."""
    import workflows.reports
    from workflows.cli import run

    timing = {}
    write_reports = workflows.reports.write_reports

    def timed_reports(*args, **kwargs):  # reports are timed apart (issue 15 item 3)
        timing["peak_before_reports_kib"] = _peak_kib()
        start = _cpu_s()
        try:
            return write_reports(*args, **kwargs)
        finally:
            timing["reports_cpu_s"] = _cpu_s() - start

    workflows.reports.write_reports = timed_reports
    with tempfile.TemporaryDirectory(dir=bids.parent) as tmp:
        argv = [str(bids), str(Path(tmp) / "out"), "participant", "-w", str(Path(tmp) / "work"),
                "--participant-label", "01", "--nprocs", "1", "--omp-nthreads", "1",
                "--plugin", "Linear", "--device", "cpu",
                # the denoising of the direct calls (msica's defaults denoise nothing)
                "--denoise-strategy", "simple", "--high-pass", "0.01", "--detrend",
                "--standardize", *mode_args]
        t0 = _cpu_s()
        code = run(argv)
        cpu = _cpu_s() - t0
    if code != 0:
        raise RuntimeError(f"msica participant exited with {code}")
    return {"cpu_s": cpu, **timing}


def _step_workflow(bids: Path) -> dict:
    from workflows.bids.simulated import truth_templates

    mode_args = []
    for template, labels in truth_templates(bids):
        mode_args += ["--template", str(template), "--template-labels", str(labels)]
    return _run_participant_level(bids, mode_args)


def _step_datadriven(bids: Path) -> dict:
    return _run_participant_level(bids, ["--model-orders", *map(str, DATA_DRIVEN_ORDERS)])


# --- group PCA ---------------------------------------------------------------------------------


def make_group_blocks(root: Path, n_unique: int, n_rows: int, n_voxels: int, rank: int,
                      n_volumes: int = 300) -> Path:
    """Write ``n_unique`` subject PCAs of simulated runs (float32 ``.npy``) under ``root``.

    Each run is ``A_i @ S + noise`` (``n_volumes`` volumes; ``rank`` shared Laplacian
    spatial sources whose amplitudes decay from 3 to 0.3; subject-specific time courses;
    unit white noise), reduced by :func:`pipeline.ica.pca.subject_pca` to ``n_rows``
    whitened components: what the participant level writes for the group level.
    """
    import numpy as np

    from pipeline.ica.pca import subject_pca

    folder = root / f"subjpca_{n_unique}x{n_rows}x{n_voxels}_r{rank}_t{n_volumes}"
    done = folder / "done"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(RANDOM_STATE)
    sources = rng.laplace(size=(rank, n_voxels)).astype(np.float32)
    amplitude = np.geomspace(3.0, 0.3, rank).astype(np.float32)
    for i in range(n_unique):
        timecourses = rng.standard_normal((n_volumes, rank), dtype=np.float32) * amplitude
        run = timecourses @ sources
        run += rng.standard_normal(run.shape, dtype=np.float32)
        run -= run.mean(axis=0, keepdims=True)
        np.save(folder / f"block{i:04d}.npy", subject_pca(run, n_rows, device="cpu").reduced)
    done.write_text("ok")
    return folder


def msica_subject_pcas(folder: Path) -> Path:
    """The blocks of ``folder`` as subject-PCA files of msica (``.npz``, in ``folder/msica``).

    Read back by :func:`pipeline.ica.persistence.read_subject_pcas`, the group level's reader
    (archive read, then the group mask's columns gathered: here all of them).
    """
    import numpy as np

    from pipeline.ica.pca import SubjectPCAResult
    from pipeline.ica.persistence import save_subject_pca

    out = folder / "msica"
    if (out / "done").is_file():
        return out
    out.mkdir(exist_ok=True)
    for path in sorted(folder.glob("block*.npy")):
        reduced = np.load(path)
        rows, n_voxels = reduced.shape
        result = SubjectPCAResult(reduced, np.eye(rows), np.eye(rows), np.ones(rows))
        save_subject_pca(out / f"{path.stem}.npz", result, voxels=np.arange(n_voxels),
                         shape=(n_voxels, 1, 1), affine=np.eye(4),
                         sample_mask=np.arange(rows))
    (out / "done").write_text("ok")
    return out


def _group_loaders(folder: Path, n_subjects: int, reader: str = "npy"):
    import numpy as np

    from pipeline.ica.persistence import read_subject_pcas

    files = sorted(folder.glob("block*.npy"))
    n_files = len(files)
    if reader == "msica":  # the files of msica_subject_pcas(folder), read as the group level does
        n_voxels = np.load(files[0], mmap_mode="r").shape[1]
        read = read_subject_pcas(sorted((folder / "msica").glob("block*.npz")),
                                 np.arange(n_voxels))["reduced"].__getitem__
    else:
        def read(j: int):
            return np.load(files[j])

    def loader(i: int):
        def load():
            block = read(i % n_files)
            if i >= n_files:  # distinct subjects from the same file: seeded row sign flips
                signs = np.random.default_rng(i).choice(np.float32([-1.0, 1.0]), block.shape[0])
                block *= signs[:, None]
            return block
        return load

    return [loader(i) for i in range(n_subjects)]


def _step_group_read(params: dict) -> dict:
    loaders = _group_loaders(Path(params["folder"]), params["n_subjects"], params["reader"])
    t0 = _cpu_s()
    total = 0.0
    for load in loaders:
        total += float(load()[0, 0])
    return {"cpu_s": _cpu_s() - t0}


def _step_group_pca(params: dict) -> dict:
    from pipeline.ica.pca import group_pca

    loaders = _group_loaders(Path(params["folder"]), params["n_subjects"], params["reader"])
    kwargs = {k: params[k] for k in ("method", "n_iter", "subspace_size") if params.get(k)}
    t0 = _cpu_s()
    res = group_pca(loaders, params["n_components"], random_state=RANDOM_STATE, device="cpu",
                    **kwargs)
    cpu = _cpu_s() - t0
    return {"cpu_s": cpu, "n_iter": int(res.n_iter), "converged": bool(res.converged),
            "n_passes": int(getattr(res, "n_passes", res.n_iter + 1)),
            "eigenvalues": [float(v) for v in res.eigenvalues]}


def _case_main(kind: str, params_json: str, threads: int) -> None:
    params = json.loads(params_json)
    _pin_threads(threads)
    import nibabel  # noqa: F401  (imports counted in the baseline, not in the case)
    import nilearn.maskers  # noqa: F401  (the interfaces import it when they run)
    import nilearn.signal  # noqa: F401
    import torch  # noqa: F401

    import pipeline.denoise  # noqa: F401
    import pipeline.ica.scica  # noqa: F401
    if kind in ("workflow", "datadriven"):
        import workflows.cli  # noqa: F401
    base = _rss_kib()
    start = time.perf_counter()
    if kind in PARTICIPANT_STEPS:
        out = globals()[f"_step_{kind}"](Path(params["bids"]))
    else:
        out = globals()[f"_step_{kind}"](params)
    out.update(wall_s=time.perf_counter() - start, base_kib=base, peak_kib=_peak_kib())
    print("RESULT " + json.dumps(out), flush=True)


# --- reports -----------------------------------------------------------------------------------


def participant(args) -> None:
    data_root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="scale_"))
    data_root.mkdir(parents=True, exist_ok=True)
    steps = [s for s in PARTICIPANT_STEPS if s not in args.skip]
    import pipeline

    print(f"participant level: msica {pipeline.__version__} ({Path(pipeline.__file__).parent}), "
          f"device=cpu, threads={args.threads}, template mode (4 + 10 networks; datadriven: "
          f"orders {' '.join(map(str, DATA_DRIVEN_ORDERS))}), "
          f"strategy simple, high-pass 0.01 Hz, TR {T_R} s")
    header = (f"{'grid':>5} {'vols':>5} {'voxels':>7} {'step':>10} {'CPU s':>8} {'peak GB':>8} "
              f"{'B/vv':>6} {'B/vv>imp':>8} {'x read':>7} {'x nilearn':>9} {'x direct':>8}")
    print(header)
    for grid in args.grid_mm:
        for n_volumes in args.n_volumes:
            t0 = time.perf_counter()
            bids = make_participant_data(data_root, grid, n_volumes, args.tile_from)
            made = time.perf_counter() - t0
            res = {}
            for step in steps:
                res[step] = _run_case(step, {"bids": str(bids)}, args.threads)
            n_vox = next((r["n_voxels"] for r in res.values() if "n_voxels" in r), None)
            if n_vox is None:
                import nibabel as nib
                n_vox = int((nib.load(_run_files(bids)["mask"]).get_fdata() > 0).sum())
            cells = n_vox * n_volumes
            for step, r in res.items():
                ratios = []
                for ref in ("read", "nilearn", "direct"):
                    ok = (ref in res and ref != step and res[ref]["cpu_s"] > 0
                          and (step != "datadriven" or ref == "read"))
                    ratios.append(f"{r['cpu_s'] / res[ref]['cpu_s']:.2f}" if ok else "")
                peak = r["peak_kib"] * 1024
                above = (r["peak_kib"] - r["base_kib"]) * 1024
                print(f"{grid:>5g} {n_volumes:>5d} {n_vox:>7d} {step:>10} {r['cpu_s']:>8.2f} "
                      f"{peak / 1e9:>8.2f} {peak / cells:>6.1f} {above / cells:>8.1f} "
                      f"{ratios[0]:>7} {ratios[1]:>9} {ratios[2]:>8}", flush=True)
                if step in ("workflow", "datadriven") and "reports_cpu_s" in r:
                    pre = r["peak_before_reports_kib"] * 1024
                    wf = r["cpu_s"] - r["reports_cpu_s"]
                    direct = res.get("direct", {}).get("cpu_s") if step == "workflow" else None
                    print(f"{'':>5} {'':>5} {'':>7} {'wf-rep':>10} {wf:>8.2f} {pre / 1e9:>8.2f} "
                          f"{pre / cells:>6.1f} {'':>8} {'':>7} {'':>9} "
                          f"{(f'{wf / direct:.2f}' if direct else ''):>8}   "
                          f"(workflow without its reports: {r['reports_cpu_s']:.1f} CPU s)",
                          flush=True)
            levels = [level for level in ("workflow", "datadriven") if level in res]
            if levels:  # what the nodes declare to --mem against the measured peaks
                from workflows.execution.memory import run_mem_gb

                files = _run_files(bids)
                declared = run_mem_gb(files["bold"], files["mask"])
            for level in levels:
                measured = res[level]["peak_kib"] * 1024 / 1e9
                print(f"{'':>5} {'':>5} {'':>7} {'mem_gb':>10} {'':>8} {declared:>8.2f}   "
                      f"(run_mem_gb declared ÷ {level} peak: {declared / measured:.2f})",
                      flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"grid_mm": grid, "n_volumes": n_volumes,
                                        "n_voxels": n_vox, "data_s": made, **res}) + "\n")


def group(args) -> None:
    import numpy as np

    data_root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="scale_"))
    data_root.mkdir(parents=True, exist_ok=True)
    k = max(args.orders)
    rows = 2 * k
    folder = make_group_blocks(data_root, min(args.unique, max(args.n_subjects)), rows,
                               args.n_voxels, args.rank)
    if args.reader == "msica":
        msica_subject_pcas(folder)
    source = {"npy": ".npy (np.load)", "msica": "msica's .npz (read_subject_pcas)"}[args.reader]
    print(f"group PCA alone: {args.n_voxels} voxels, {rows} rows per subject (2 x order {k}), "
          f"float32 blocks from {source}, {args.unique} distinct files, method={args.method}, "
          f"threads={args.threads}")
    print(f"{'N':>5} {'step':>6} {'CPU s':>8} {'wall s':>8} {'peak GB':>8} {'passes':>6} "
          f"{'conv':>5} {'s/pass':>7} {'x read':>7} {'x read*passes':>13} {'wall x':>7}")
    peaks = {}
    for n in args.n_subjects:
        params = {"folder": str(folder), "n_subjects": n, "reader": args.reader}
        read = _run_case("group_read", params, args.threads)
        pca = _run_case("group_pca", {**params, "n_components": k, "method": args.method,
                                      "n_iter": args.n_iter, "subspace_size": args.subspace_size},
                        args.threads)
        passes = pca["n_passes"]
        peaks[n] = pca["peak_kib"]
        print(f"{n:>5d} {'read':>6} {read['cpu_s']:>8.2f} {read['wall_s']:>8.2f} "
              f"{read['peak_kib'] / 1e6 * 1.024:>8.2f}")
        print(f"{n:>5d} {'pca':>6} {pca['cpu_s']:>8.2f} {pca['wall_s']:>8.2f} "
              f"{pca['peak_kib'] / 1e6 * 1.024:>8.2f} "
              f"{passes:>6d} {str(pca['converged']):>5} {pca['cpu_s'] / passes:>7.2f} "
              f"{pca['cpu_s'] / read['cpu_s']:>7.2f} "
              f"{pca['cpu_s'] / (read['cpu_s'] * passes):>13.2f} "
              f"{pca['wall_s'] / (read['wall_s'] * passes):>7.2f}", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"n_subjects": n, "read": read, "pca": pca}) + "\n")
    if len(peaks) > 1:
        vals = np.array(list(peaks.values()), dtype=float)
        print(f"peak RSS spread over N: max/min = {vals.max() / vals.min():.3f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_case":
        _case_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS/torch threads per case")
    parser.add_argument("--data-dir", default=None,
                        help="where simulated data are kept between runs (default: a new temp dir)")
    parser.add_argument("--json", default=None, help="append raw results (JSON lines) here")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("participant", help="participant level per grid and run length")
    p.add_argument("--grid-mm", type=float, nargs="+", default=[6.0, 3.0])
    p.add_argument("--n-volumes", type=int, nargs="+", default=[150, 300])
    p.add_argument("--skip", nargs="*", default=[], choices=PARTICIPANT_STEPS)
    p.add_argument("--tile-from", type=int, default=None,
                   help="make longer runs by repeating this many simulated volumes")
    g = sub.add_parser("group-pca", help="group PCA alone on synthetic subject-PCA blocks")
    g.add_argument("--n-subjects", type=int, nargs="+", default=[100, 300])
    g.add_argument("--orders", type=int, nargs="+", default=[25, 50, 75, 100])
    g.add_argument("--n-voxels", type=int, default=70266, help="3 mm simulator mask")
    g.add_argument("--rank", type=int, default=150, help="planted shared sources")
    g.add_argument("--unique", type=int, default=100, help="distinct block files on disk")
    g.add_argument("--method", default="mpowit")
    g.add_argument("--reader", choices=("npy", "msica"), default="npy",
                   help="blocks read from .npy files, or from msica's subject-PCA files")
    g.add_argument("--n-iter", type=int, default=None)
    g.add_argument("--subspace-size", type=int, default=None)
    args = parser.parse_args()
    if args.command == "participant":
        participant(args)
    else:
        group(args)


if __name__ == "__main__":
    main()
