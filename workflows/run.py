"""Run one analysis level: build the workflows, run them, and report failures per participant.

One failing participant never takes the others down: inputs are collected per
participant, each participant is its own sub-workflow, and after the run the
Nipype crash files are read back so that every failure is reported as one
line naming the participant and the cause.
"""

from __future__ import annotations

import logging
import os
import re
import sys
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


def _configure_environment(work_dir: Path, verbose: int) -> None:
    """Keep every cache under the work directory, turn off online checks, quiet Nipype."""
    cache = work_dir / ".cache"
    for var, sub in (("MPLCONFIGDIR", "matplotlib"), ("XDG_CACHE_HOME", "xdg"),
                     ("TORCH_HOME", "torch")):
        os.environ.setdefault(var, str(cache / sub))
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    nipype_config.update_config({"logging": _nipype_logging(verbose)})
    nipype_logging.update_logging(nipype_config)
    logging.getLogger("nipype").propagate = False  # it has its own handler


def run_level(settings: Settings) -> int:
    """Run the analysis level named in ``settings``; return the exit code."""
    from workflows.exit_codes import ExitCode, exit_code_for

    if not settings.bids_dir.is_dir():
        raise FileNotFoundError(
            f"BIDS_DIR {settings.bids_dir} does not exist; check the path "
            "(and the container's -B binds)."
        )
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    _configure_environment(settings.work_dir, settings.verbose)
    if settings.validate:
        from workflows.validation import validate_bids

        validate_bids(settings.bids_dir)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    config_file = settings.write_toml()
    LOGGER.info("Settings of this run: %s", config_file)
    if settings.analysis_level == "participant":
        failures = _run_participant_level(settings)
    else:
        failures = _run_group_level(settings)
    if not failures:
        return int(ExitCode.OK)
    for where, exc in failures.items():
        print(f"msica: error: {where}: {exc}", file=sys.stderr)
    codes = {exit_code_for(exc) for exc in failures.values()}
    return int(codes.pop()) if len(codes) == 1 else int(ExitCode.ERROR)


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

    layout = build_layout(
        settings.bids_dir,
        derivatives=list(settings.derivatives) or None,
        work_dir=settings.work_dir,
        database_dir=settings.work_dir / "bids_db" / settings.run_uuid,
    )
    labels = collect_participants(layout, list(settings.participant_label) or None)
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
    crash_dir = settings.work_dir / "crash" / settings.run_uuid
    workflow.config.update(_nipype_config(settings, crash_dir))
    _write_citation(workflow, settings.output_dir, settings.analysis_level)
    try:
        workflow.run(plugin=settings.plugin, plugin_args=_plugin_args(settings))
    except RuntimeError as exc:
        failures = _failures_from_crashfiles(crash_dir, where_pattern)
        if not failures:
            raise
        LOGGER.debug("Nipype reported: %s", exc)
        return failures
    return {}


#: Where a crash happened: the participant of a participant-level node ...
_PARTICIPANT_OF_CRASH = re.compile(r"sub_(?P<label>[A-Za-z0-9]+)_wf")
#: ... or the node name of a group-level node.
_GROUP_NODE_OF_CRASH = re.compile(r"msica_group_wf\.(?P<node>\w+)")


_ERROR_LINE = re.compile(
    r"^(?:[\w.]+\.)?(InputDataError|FileNotFoundError|ValueError|TypeError|\w+Error): (.+)$"
)
_ERROR_TYPES: dict[str, type[BaseException]] = {
    "InputDataError": InputDataError,
    "FileNotFoundError": FileNotFoundError,
    "ValueError": ValueError,
    "TypeError": TypeError,
}


def _failures_from_crashfiles(crash_dir: Path, where_pattern: re.Pattern
                              ) -> dict[str, BaseException]:
    """Read Nipype crash files back into ``{where: exception}``.

    ``where`` is ``sub-<label>`` for participant-level nodes and the node name
    for group-level ones; the exception carries the last error line of the traceback.
    """
    from nipype.utils.filemanip import loadcrash

    failures: dict[str, BaseException] = {}
    for crash_file in sorted(crash_dir.glob("crash-*.pklz")):
        crash = loadcrash(str(crash_file))
        found_where = where_pattern.search(str(crash.get("node")) + " " + crash_file.name)
        if found_where is None:
            where = crash_file.name
        elif "label" in found_where.groupdict():
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


def _write_citation(workflow, output_dir: Path, level: str) -> None:
    from workflows.derivatives import atomic_write

    text = workflow.visit_desc()
    if not text:
        return
    path = output_dir / "logs" / ("CITATION.md" if level == "participant" else f"CITATION-{level}.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(text + "\n")


def _run_group_level(settings: Settings) -> dict[str, BaseException]:
    from workflows.group import build_group_wf

    workflow = build_group_wf(
        output_dir=settings.output_dir,
        bids_dir=settings.bids_dir,
        participant_label=list(settings.participant_label) or None,
        targets=list(settings.targets),
        confounds=list(settings.confounds),
        n_permutations=settings.n_permutations,
        introspect=settings.introspect,
        device=settings.device,
        seed=settings.seed,
    )
    workflow.base_dir = str(settings.work_dir)
    failures = _run_workflow(workflow, settings, _GROUP_NODE_OF_CRASH)
    if not failures:
        LOGGER.info("Group level finished.")
    return failures
