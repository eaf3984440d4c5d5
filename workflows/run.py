"""Run one analysis level: build the workflows, run them, and report failures per participant.

One failing participant never takes the others down: inputs are collected per
participant, each participant is its own sub-workflow, and after the run the
Nipype crash files are read back so that every failure is reported as one
line naming the participant and the cause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from pipeline.exceptions import InputDataError
from workflows.config import Settings

__all__ = ["ParticipantFailure", "run_level"]

LOGGER = logging.getLogger("msica.run")


class ParticipantFailure(RuntimeError):
    """One or more participants failed; ``failures`` maps labels to their errors."""

    def __init__(self, failures: dict[str, BaseException]) -> None:
        self.failures = failures
        lines = [f"sub-{label}: {exc}" for label, exc in failures.items()]
        super().__init__(f"{len(failures)} participant(s) failed:\n" + "\n".join(lines))


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


@contextlib.contextmanager
def _run_environment(work_dir: Path, verbose: int) -> Iterator[None]:
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


def run_level(settings: Settings) -> int:
    """Run the analysis level named in ``settings``; return the exit code."""
    if not settings.bids_dir.is_dir():
        raise FileNotFoundError(
            f"BIDS_DIR {settings.bids_dir} does not exist; check the path "
            "(and the container's -B binds)."
        )
    from workflows.preflight import check_directories

    check_directories(settings.output_dir, settings.work_dir)
    with _run_environment(settings.work_dir, settings.verbose):
        return _run_level(settings)


def _run_level(settings: Settings) -> int:
    from workflows.exit_codes import ExitCode, exit_code_for

    if settings.validate:
        from workflows.validation import validate_bids

        validate_bids(settings.bids_dir)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    config_file = settings.write_toml()
    LOGGER.info("Settings of this run: %s", config_file)
    with _stop_workers_on_sigterm():
        if settings.analysis_level == "participant":
            failures = _run_participant_level(settings)
        else:
            failures = _run_group_level(settings)
    from workflows.reports import write_reports

    write_reports(settings, failures)  # logs a warning and goes on if a report fails
    if not failures:
        return int(ExitCode.OK)
    for where, exc in failures.items():
        print(f"msica: error: {where}: {exc}", file=sys.stderr)
    codes = {exit_code_for(exc) for exc in failures.values()}
    return int(codes.pop()) if len(codes) == 1 else int(ExitCode.ERROR)


@contextlib.contextmanager
def _stop_workers_on_sigterm() -> Iterator[None]:
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


def _nipype_config(settings: Settings, crash_dir: Path) -> dict:
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


def _plugin_args(settings: Settings) -> dict:
    if settings.plugin == "SLURM":
        from workflows.submit import nipype_slurm_plugin_args

        return nipype_slurm_plugin_args(omp_nthreads=settings.omp_nthreads,
                                        mem_gb=settings.mem_gb, max_jobs=settings.nprocs)
    if settings.plugin == "MultiProc":
        args = {"n_procs": settings.nprocs, "raise_insufficient": False}
        if settings.mem_gb:
            args["memory_gb"] = settings.mem_gb
        return args
    return {}


def _run_participant_level(settings: Settings) -> dict[str, BaseException]:
    from workflows.base import dataset_links, init_msica_participant_wf
    from workflows.bids import build_layout, collect_participants, collect_runs
    from workflows.derivatives import write_dataset_description
    from workflows.engine import Workflow
    from workflows.preflight import check_run, check_templates

    layout = build_layout(
        settings.bids_dir,
        derivatives=list(settings.derivatives) or None,
        work_dir=settings.work_dir,
        database_dir=settings.work_dir / "bids_db" / settings.run_uuid,
    )
    labels = collect_participants(layout, list(settings.participant_label) or None)
    templates = check_templates(settings.templates, settings.template_labels
                                or [None] * len(settings.templates))
    write_dataset_description(settings.output_dir, source_datasets=dataset_links(settings))

    failures: dict[str, BaseException] = {}
    workflow = Workflow(name="msica_participant_wf", base_dir=str(settings.work_dir))
    for label in labels:
        try:
            runs = collect_runs(
                layout,
                label,
                session=list(settings.session_label) or None,
                task=settings.task,
                bids_filters=settings.bids_filters,
            )
            for run in runs:
                check_run(run, strategy=settings.denoise_strategy, templates=templates,
                          resample_template=settings.resample_template)
        except (InputDataError, FileNotFoundError) as exc:
            LOGGER.error("sub-%s: %s", label, exc)
            failures[f"sub-{label}"] = exc
            if settings.stop_on_first_crash:
                return failures
            continue
        workflow.add_nodes([init_msica_participant_wf(settings, label, runs)])
    if not workflow._graph.nodes():
        return failures

    failures.update(_run_workflow(workflow, settings, _PARTICIPANT_OF_CRASH))
    if len(failures) < len(labels):
        LOGGER.info("Participant level finished for %d participant(s).",
                    len(labels) - len(failures))
    return failures


def _run_workflow(workflow, settings: Settings, where_pattern: re.Pattern) -> dict:
    """Run ``workflow``; return ``{where: exception}`` for the nodes that crashed."""
    crash_dir = settings.work_dir / "crash" / settings.run_uuid / workflow.name
    workflow.config.update(_nipype_config(settings, crash_dir))
    _write_citation(workflow, settings.output_dir, settings.analysis_level)
    progress = _Progress(workflow)
    try:
        workflow.run(plugin=settings.plugin,
                     plugin_args={**_plugin_args(settings), "status_callback": progress})
    except RuntimeError as exc:
        failures = _failures_from_crashfiles(crash_dir, where_pattern,
                                             logs_dir=settings.output_dir / "logs")
        if not failures:
            raise
        LOGGER.debug("Nipype reported: %s", exc)
        return failures
    finally:
        progress.close()
    return {}


class _Progress:
    """Nipype ``status_callback``: a progress bar on a terminal, log lines otherwise.

    Nodes are counted per participant (``sub-<label>``, from the ``sub_<label>_wf``
    in their name) or, for nodes of no participant, per workflow. On an
    interactive stderr one line is redrawn; otherwise each finished or failed
    participant (and, for workflows of no participant, each node) is logged once.
    """

    def __init__(self, workflow, stream=None) -> None:
        from nipype.interfaces.utility import IdentityInterface

        self._stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._name = workflow.name
        self._total: dict[str, int] = {}
        for name in workflow.list_node_names():  # Nipype drops identity nodes before running
            if not isinstance(workflow.get_node(name).interface, IdentityInterface):
                unit = self._unit(name)
                self._total[unit] = self._total.get(unit, 0) + 1
        self._done = dict.fromkeys(self._total, 0)
        self._failed: set[str] = set()

    def _unit(self, node_name: str) -> str:
        found = _PARTICIPANT_OF_CRASH.search(node_name)
        return f"sub-{found.group('label')}" if found else self._name

    def __call__(self, node, status: str) -> None:
        if status not in ("end", "exception"):
            return  # 'start'
        unit = self._unit(node.fullname)
        self._total.setdefault(unit, 0)
        self._done.setdefault(unit, 0)
        node_name = node.fullname.removeprefix(f"{self._name}.")
        if status == "exception":
            self._failed.add(unit)
            message = f"{unit}: node {node_name} failed"
        else:
            self._done[unit] += 1
            message = f"{unit}: {node_name} done ({self._done[unit]}/{self._total[unit]})"
        if self._tty:
            self._draw()
        elif status == "exception" or unit == self._name:
            LOGGER.info("%s", message)
        elif self._done[unit] == self._total[unit]:
            LOGGER.info("%s finished (%d nodes); %d of %d participants done.", unit,
                        self._total[unit], *self._participants_done())
        else:
            LOGGER.debug("%s", message)

    def _participants_done(self) -> tuple[int, int]:
        """(participants whose nodes all finished, participants)."""
        units = [u for u in self._total if u.startswith("sub-")]
        return sum(self._done[u] >= self._total[u] for u in units), len(units)

    def _draw(self) -> None:
        done, total = sum(self._done.values()), max(sum(self._total.values()), 1)
        filled = min(30, 30 * done // total)
        line = f"\r\x1b[K{self._name} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} nodes, "
        finished, participants = self._participants_done()
        if participants:
            line += f"{finished}/{participants} participants done, "
        line += f"{len(self._failed)} failed"
        self._stream.write(line)
        self._stream.flush()

    def close(self) -> None:
        """End the progress line (terminal only)."""
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


#: Where a crash happened: the participant of a participant-level node ...
_PARTICIPANT_OF_CRASH = re.compile(r"sub_(?P<label>[A-Za-z0-9]+)_wf")
#: ... or the node name of a group-level node.
_GROUP_NODE_OF_CRASH = re.compile(r"msica_group_wf\.(?P<node>\w+)")
#: ... or, in data-driven mode, a participant's back-reconstruction or the group ICA node.
_GROUP_ICA_CRASH = re.compile(r"sub_(?P<label>[A-Za-z0-9]+)_wf|msica_groupica_wf\.(?P<node>\w+)")


_ERROR_LINE = re.compile(
    r"^(?:[\w.]+\.)?(InputDataError|FileNotFoundError|ValueError|TypeError|\w+Error): (.+)$"
)
_ERROR_TYPES: dict[str, type[BaseException]] = {
    "InputDataError": InputDataError,
    "FileNotFoundError": FileNotFoundError,
    "ValueError": ValueError,
    "TypeError": TypeError,
}


def _failures_from_crashfiles(crash_dir: Path, where_pattern: re.Pattern, *,
                              logs_dir: Path | None = None) -> dict[str, BaseException]:
    """Read Nipype crash files back into ``{where: exception}``.

    ``where`` is ``sub-<label>`` for participant-level nodes and the node name
    for group-level ones; the exception carries the last error line of the traceback.
    With ``logs_dir``, each crash is also written there as readable text
    (see :func:`_write_crash_text`).
    """
    from nipype.utils.filemanip import loadcrash

    failures: dict[str, BaseException] = {}
    for crash_file in sorted(crash_dir.glob("crash-*.pklz")):
        crash = loadcrash(str(crash_file))
        if logs_dir is not None:
            _write_crash_text(crash_file, crash, logs_dir)
        found_where = where_pattern.search(str(crash.get("node")) + " " + crash_file.name)
        if found_where is None:
            where = crash_file.name
        elif found_where.groupdict().get("label"):
            where = f"sub-{found_where.group('label')}"
        else:
            where = found_where.group("node")
        message, error_type = f"node crashed; see {crash_file}", RuntimeError
        for line in reversed("".join(crash.get("traceback", [])).splitlines()):
            found = _ERROR_LINE.match(line.strip())
            if found:
                error_type = _ERROR_TYPES.get(found.group(1), RuntimeError)
                message = found.group(2)
                break
        failures.setdefault(where, error_type(message))
    return failures


_CRASH_STAMP = re.compile(r"^crash-(?P<stamp>\d{8}-\d{6})-")


def _write_crash_text(crash_file: Path, crash: dict, logs_dir: Path) -> Path:
    """Write one Nipype crash as text: ``logs/crash-<time>-<sub-label|workflow>-<node>.txt``.

    The file names the participant (or workflow), the node, the error and the
    full traceback, and the Nipype crash file it was read from; it is written atomically.
    """
    from workflows.derivatives import atomic_write

    node_name = str(crash.get("node"))
    parts = node_name.split(".")
    found = _PARTICIPANT_OF_CRASH.search(node_name)
    if found:
        where, inner = f"sub-{found.group('label')}", parts[parts.index(found.group(0)) + 1:]
    else:
        where, inner = parts[0], parts[1:]
    stamp = _CRASH_STAMP.match(crash_file.name)
    stamp = stamp.group("stamp") if stamp else crash_file.stem
    traceback_text = "".join(crash.get("traceback", [])).rstrip()
    error = next((line.strip() for line in reversed(traceback_text.splitlines())
                  if _ERROR_LINE.match(line.strip())), "(no error line in the traceback)")
    lines = [f"participant: {where.removeprefix('sub-')}" if found else f"workflow: {where}",
             f"node: {node_name}", f"error: {error}", f"nipype crash file: {crash_file}",
             "", "traceback:", traceback_text]
    path = logs_dir / f"crash-{stamp}-{where}-{'.'.join(inner) or 'node'}.txt"
    with atomic_write(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _write_citation(workflow, output_dir: Path, level: str) -> None:
    from workflows.derivatives import atomic_write

    text = workflow.visit_desc()
    if not text:
        return
    stage = workflow.name.removeprefix("msica_").removesuffix("_wf")  # group, groupica
    path = output_dir / "logs" / ("CITATION.md" if level == "participant" else f"CITATION-{stage}.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(text + "\n")


def _run_group_level(settings: Settings) -> dict[str, BaseException]:
    from workflows.group import build_group_wf
    from workflows.preflight import check_participants_table

    check_participants_table(settings.bids_dir / "participants.tsv", targets=settings.targets,
                             site_column=settings.site_column)
    failures: dict[str, BaseException] = {}
    if settings.model_orders:
        failures.update(_run_group_ica(settings))
        if "group_ica" in failures:
            return failures
    workflow = build_group_wf(
        output_dir=settings.output_dir,
        bids_dir=settings.bids_dir,
        participant_label=list(settings.participant_label) or None,
        targets=list(settings.targets),
        confounds=list(settings.confounds),
        n_permutations=settings.n_permutations,
        site_column=settings.site_column,
        harmonize=settings.harmonize,
        harmonize_protect=list(settings.harmonize_protect),
        connectivity=list(settings.connectivity),
        nprocs=settings.nprocs,
        introspect=settings.introspect,
        device=settings.device,
        seed=settings.seed,
    )
    workflow.base_dir = str(settings.work_dir)
    failures.update(_run_workflow(workflow, settings, _GROUP_NODE_OF_CRASH))
    if not failures:
        LOGGER.info("Group level finished.")
    return failures


def _run_group_ica(settings: Settings) -> dict[str, BaseException]:
    """Data-driven mode: group ICA and GICA back-reconstruction, before the group tables."""
    from workflows.base import dataset_links
    from workflows.group_ica import collect_subject_pcas, init_group_ica_wf

    workflow = init_group_ica_wf(
        pca_files=collect_subject_pcas(settings.subject_pca_dir,
                                       list(settings.participant_label) or None),
        output_dir=settings.output_dir,
        model_orders=settings.model_orders,
        algorithm=settings.ica_algorithm,
        n_runs=settings.icasso_runs,
        dfnc_window=settings.dfnc_window,
        seed=settings.seed,
        device=settings.device,
        dataset_links=dataset_links(settings),
    )
    workflow.base_dir = str(settings.work_dir)
    return _run_workflow(workflow, settings, _GROUP_ICA_CRASH)
