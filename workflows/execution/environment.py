"""The environment of a run: caches under the work directory, Nipype's settings, SIGTERM."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from workflows.config import Settings

__all__ = ["collector_skips_what_exists", "nipype_config", "plugin_args", "run_environment",
           "stop_joblib_workers", "stop_workers_on_sigterm"]

#: Environment variables pointing caches, configs and temporary files into the work
#: directory (subfolders of ``WORK_DIR/.cache``), so that a run writes nothing
#: outside OUTPUT_DIR and WORK_DIR, needs no writable HOME, and ignores per-user
#: configs (~/.config/matplotlib, ~/.nipype/nipype.cfg) that would change results.
_CACHE_VARIABLES = {
    "MPLCONFIGDIR": "matplotlib",
    "XDG_CACHE_HOME": "xdg_cache",   # fontconfig and any other XDG-aware library
    "XDG_CONFIG_HOME": "xdg_config",
    "TORCH_HOME": "torch",
    "NIPYPE_CONFIG_DIR": "nipype",   # nipype.cfg / nipype.json (default ~/.nipype)
    "TMPDIR": "tmp",                 # tempfile, joblib memmaps
}


def stop_joblib_workers() -> None:
    """Stop the worker processes joblib (loky) keeps in this process for reuse.

    Nipype's MultiProc plugin runs nodes in worker processes that exit only when
    the processes they started have, and loky keeps its idle workers for 300 s:
    a node that ran joblib in parallel (the classifiers' folds and permutations
    with ``--nprocs`` > 1) held the end of the level for five minutes, and an
    executor left in the main process (the participant reports) made joblib in
    the workers forked from it later wait forever. Whatever gives joblib more
    than one process during a level calls this before it returns.
    """
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


@contextlib.contextmanager
def collector_skips_what_exists() -> Iterator[None]:
    """Keep Python's cyclic garbage collector off the objects that exist on entry.

    Nipype's scheduler allocates many small objects per node and poll, so the
    collector runs often, and each full collection walks every object alive: the
    workflow graph, its nodes' specs, the derivatives index. On a cached rerun of 24
    participants those walks took most of the level's time. :func:`gc.freeze` moves
    what exists now to a permanent generation that collections skip (what the
    scheduler creates is still collected); :func:`gc.unfreeze` gives it back on exit.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def run_environment(work_dir: Path, verbose: int) -> Iterator[None]:
    """While a level runs: every cache under the work directory, no online checks, quiet Nipype.

    The variables of ``_CACHE_VARIABLES`` are set (overriding the caller's, which
    would send writes outside WORK_DIR) and Nipype's online version check is off
    (``NIPYPE_NO_ET`` and ``check_version = false``), so a run opens no network
    connection. The caller's environment is restored afterwards: ``run`` may be
    called in-process (tests, notebooks) and must not leave TMPDIR pointing into
    a work directory.
    """
    import tempfile

    names = [*_CACHE_VARIABLES, "NIPYPE_NO_ET"]
    saved = {name: os.environ.get(name) for name in names}
    for var, sub in _CACHE_VARIABLES.items():
        path = work_dir / ".cache" / sub
        path.mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(path)
    os.environ["NIPYPE_NO_ET"] = "1"
    tempfile.tempdir = None  # re-read TMPDIR
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    nipype_config.set("execution", "check_version", "false")
    nipype_config.update_config({"logging": _nipype_logging(verbose)})
    nipype_logging.update_logging(nipype_config)
    logging.getLogger("nipype").propagate = False  # it has its own handler
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tempfile.tempdir = None


@contextlib.contextmanager
def stop_workers_on_sigterm() -> Iterator[None]:
    """While running, treat SIGTERM (``kill``, a scheduler's time limit) like Ctrl-C.

    Python's default would end this process at once and leave the Nipype worker
    processes running on, writing into the work directory while a rerun resumes
    there. Instead the workers are terminated and the run stops as interrupted;
    a rerun with the same work directory resumes from the finished nodes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def _stop(signum, frame):
        import multiprocessing

        for child in multiprocessing.active_children():
            child.terminate()
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _nipype_logging(verbose: int) -> dict:
    """Nipype's own logging: silent by default (msica reports failures in one line each)."""
    level = {0: "CRITICAL", 1: "INFO"}.get(verbose, "DEBUG")
    return {"workflow_level": level, "interface_level": level, "utils_level": level,
            "filemanip_level": level, "log_to_file": False}


def nipype_config(settings: Settings, crash_dir: Path) -> dict:
    return {
        "logging": _nipype_logging(settings.verbose),
        "execution": {
            "crashdump_dir": str(crash_dir),
            "crashfile_format": "pklz",
            "stop_on_first_crash": settings.stop_on_first_crash,
            "remove_unnecessary_outputs": True,
            # Nipype's scheduler sleeps this long between polls (default 2 s): far longer
            # than most msica nodes take. Keep the default for SLURM's squeue polling.
            "poll_sleep_duration": 2.0 if settings.plugin == "SLURM" else 0.1,
            "check_version": False,
        },
        "monitoring": {"enabled": False},
    }


def plugin_args(settings: Settings) -> dict:
    if settings.plugin == "SLURM":
        from workflows.execution.slurm import nipype_slurm_plugin_args

        return nipype_slurm_plugin_args(omp_nthreads=settings.omp_nthreads,
                                        mem_gb=settings.mem_gb, max_jobs=settings.nprocs)
    if settings.plugin == "MultiProc":
        args = {"n_procs": settings.nprocs, "raise_insufficient": False}
        if settings.mem_gb:
            args["memory_gb"] = settings.mem_gb
        return args
    return {}
