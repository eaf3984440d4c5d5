"""Run one analysis level: build the workflows, run them, and report failures per participant.

One failing participant never takes the others down: inputs are collected per
participant, each participant is its own sub-workflow, and after the run the
Nipype crash files are read back so that every failure is reported as one
line naming the participant and the cause.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from pipeline.exceptions import InputDataError
from workflows.config import Settings, options_from_settings
from workflows.execution.crashes import (
    GROUP_ICA_CRASH,
    GROUP_NODE_OF_CRASH,
    PARTICIPANT_OF_CRASH,
    failures_from_crashfiles,
)
from workflows.execution.environment import (
    collector_skips_what_exists,
    nipype_config,
    plugin_args,
    run_environment,
    stop_workers_on_sigterm,
)
from workflows.execution.progress import Progress

__all__ = ["ParticipantFailure", "run_level"]

LOGGER = logging.getLogger("msica.run")


class ParticipantFailure(RuntimeError):
    """One or more participants failed; ``failures`` maps labels to their errors."""

    def __init__(self, failures: dict[str, BaseException]) -> None:
        self.failures = failures
        lines = [f"sub-{label}: {exc}" for label, exc in failures.items()]
        super().__init__(f"{len(failures)} participant(s) failed:\n" + "\n".join(lines))


def run_level(settings: Settings) -> int:
    """Run the analysis level named in ``settings`` (or only its reports); return the exit code."""
    from workflows.execution.preflight import check_device, check_directories

    if settings.reports_only:
        from workflows.reports import check_report_inputs

        check_report_inputs(settings)  # exit 66 before anything is written
        check_directories(settings.output_dir, settings.work_dir)
        with run_environment(settings.work_dir, settings.verbose):
            return _redraw_reports(settings)
    if not settings.bids_dir.is_dir():
        raise FileNotFoundError(
            f"BIDS_DIR {settings.bids_dir} does not exist; check the path "
            "(and the container's -B binds)."
        )
    check_device(settings.device)
    check_directories(settings.output_dir, settings.work_dir)
    with run_environment(settings.work_dir, settings.verbose):
        return _run_level(settings)


def _run_level(settings: Settings) -> int:
    from workflows.exit_codes import ExitCode, exit_code_for

    if settings.validate:
        from workflows.bids.validation import validate_bids

        validate_bids(settings.bids_dir)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    config_file = settings.write_toml()
    LOGGER.info("Settings of this run: %s", config_file)
    with stop_workers_on_sigterm():
        if settings.analysis_level == "participant":
            failures = _run_participant_level(settings)
        else:
            failures = _run_group_level(settings)
    if not settings.no_reports:
        from workflows.reports import write_reports

        write_reports(settings, failures)  # logs a warning and goes on if a report fails
    if not failures:
        return int(ExitCode.OK)
    for where, exc in failures.items():
        print(f"msica: error: {where}: {exc}", file=sys.stderr)
    codes = {exit_code_for(exc) for exc in failures.values()}
    return int(codes.pop()) if len(codes) == 1 else int(ExitCode.ERROR)


def _redraw_reports(settings: Settings) -> int:
    """``--reports-only``: draw the level's reports again from the derivatives on disk."""
    from workflows.exit_codes import ExitCode
    from workflows.reports import write_reports

    LOGGER.info("Settings of this run: %s", settings.write_toml())
    write_reports(settings, {})
    return int(ExitCode.OK)


def _run_participant_level(settings: Settings) -> dict[str, BaseException]:
    from workflows.participant.base import dataset_links, init_msica_participant_wf
    from workflows.bids.layout import build_layout, collect_participants, collect_runs
    from workflows.bids.provenance import write_dataset_description
    from workflows.execution.engine import Workflow
    from workflows.execution.preflight import check_run, check_templates

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
            # building reads each run's header and mask (the memory its nodes declare)
            participant_wf = init_msica_participant_wf(settings, label, runs)
        except (InputDataError, FileNotFoundError) as exc:
            LOGGER.error("sub-%s: %s", label, exc)
            failures[f"sub-{label}"] = exc
            if settings.stop_on_first_crash:
                return failures
            continue
        workflow.add_nodes([participant_wf])
    if not workflow._graph.nodes():
        return failures

    failures.update(_run_workflow(workflow, settings, PARTICIPANT_OF_CRASH))
    if len(failures) < len(labels):
        LOGGER.info("Participant level finished for %d participant(s).",
                    len(labels) - len(failures))
    return failures


def _run_workflow(workflow, settings: Settings, where_pattern: re.Pattern) -> dict:
    """Run ``workflow``; return ``{where: exception}`` for the nodes that crashed."""
    crash_dir = settings.work_dir / "crash" / settings.run_uuid / workflow.name
    workflow.config.update(nipype_config(settings, crash_dir))
    _write_citation(workflow, settings.output_dir, settings.analysis_level)
    progress = Progress(workflow)
    try:
        with collector_skips_what_exists():
            workflow.run(plugin=settings.plugin,
                         plugin_args={**plugin_args(settings), "status_callback": progress})
    except RuntimeError as exc:
        failures = failures_from_crashfiles(crash_dir, where_pattern,
                                             logs_dir=settings.output_dir / "logs")
        if not failures:
            raise
        LOGGER.debug("Nipype reported: %s", exc)
        return failures
    finally:
        progress.close()
    return {}


def _write_citation(workflow, output_dir: Path, level: str) -> None:
    from workflows.bids.atomic import atomic_write

    text = workflow.visit_desc()
    if not text:
        return
    stage = workflow.name.removeprefix("msica_").removesuffix("_wf")  # group, groupica
    path = output_dir / "logs" / ("CITATION.md" if level == "participant" else f"CITATION-{stage}.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(text + "\n")


def _run_group_level(settings: Settings) -> dict[str, BaseException]:
    from workflows.group.base import ClassifierOptions, init_msica_group_wf
    from workflows.execution.preflight import check_participants_table

    check_participants_table(settings.bids_dir / "participants.tsv", targets=settings.targets,
                             site_column=settings.site_column)
    failures: dict[str, BaseException] = {}
    if settings.model_orders:
        failures.update(_run_group_ica(settings))
        if "group_ica" in failures:
            return failures
    workflow = init_msica_group_wf(
        output_dir=settings.output_dir,
        bids_dir=settings.bids_dir,
        participant_label=list(settings.participant_label) or None,
        classifiers=options_from_settings(ClassifierOptions, settings),
        nprocs=settings.nprocs,
        device=settings.device,
        seed=settings.seed,
    )
    workflow.base_dir = str(settings.work_dir)
    failures.update(_run_workflow(workflow, settings, GROUP_NODE_OF_CRASH))
    if not failures:
        LOGGER.info("Group level finished.")
    return failures


def _run_group_ica(settings: Settings) -> dict[str, BaseException]:
    """Data-driven mode: group ICA and GICA back-reconstruction, before the group tables."""
    from workflows.participant.base import dataset_links
    from workflows.group.groupica import collect_subject_pcas, init_group_ica_wf

    workflow = init_group_ica_wf(
        pca_files=collect_subject_pcas(settings.subject_pca_dir,
                                       list(settings.participant_label) or None),
        output_dir=settings.output_dir,
        model_orders=settings.model_orders,
        algorithm=settings.ica_algorithm,
        n_runs=settings.icasso_runs,
        fnc_measure=settings.fnc_measure,
        dfnc_window=settings.dfnc_window,
        seed=settings.seed,
        device=settings.device,
        dataset_links=dataset_links(settings),
        nprocs=settings.nprocs,
    )
    workflow.base_dir = str(settings.work_dir)
    return _run_workflow(workflow, settings, GROUP_ICA_CRASH)
