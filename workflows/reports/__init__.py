"""HTML reports of both levels, built from the derivatives on disk after a level finishes.

``OUTPUT_DIR/sub-<label>.html`` (figures in ``sub-<label>/figures/``) and
``OUTPUT_DIR/group.html`` (figures in ``group/figures/``), linked by relative paths so
the output folder can be moved or shared as it is. Figures are SVG or PNG files drawn
with matplotlib's Agg backend and nilearn (MNI152 template bundled with nilearn).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

__all__ = ["check_report_inputs", "stale_participants", "write_reports"]

LOGGER = logging.getLogger("msica.reports")


@contextmanager
def _plotting_quiet(verbose: int) -> Iterator[None]:
    """Silence plotting warnings unless ``-v``: the derivatives are what count."""
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")
        yield


def write_reports(settings, failures: Mapping[str, BaseException]) -> list[Path]:
    """Write the reports of the level that just ran (or of ``--reports-only``); never raise.

    The participant level draws a short report for each participant that failed and the
    report of each other participant that is stale (see :func:`stale_participants`): a
    rerun that reproduces a participant's derivatives leaves its report as it is. The group
    level draws ``group.html`` and, in data-driven mode (where it writes the participants'
    networks), the stale participant reports. With ``--reports-only`` every report of the
    level is drawn again. Participant reports are drawn in ``--nprocs`` processes (in this
    process when 1).

    Parameters
    ----------
    settings : workflows.config.Settings
        The run's settings (``analysis_level``, ``output_dir``, ``participant_label``,
        ``model_orders``, ``reports_only``, ``nprocs``, ``fd_threshold``, ``verbose``).
    failures : mapping of str to exception
        What failed in the run (``sub-<label>`` or a group node name).

    Returns
    -------
    list of Path
        Reports written. A report that cannot be built is logged as one warning line
        (with its traceback under ``-v``) and skipped: reports never fail a run.
    """
    output_dir = Path(settings.output_dir)
    written: list[Path] = []
    with _plotting_quiet(settings.verbose):
        if settings.analysis_level == "group":
            from workflows.reports.group import group_report

            written += _guarded("group", lambda: group_report(output_dir, failures),
                                settings.verbose)
        if settings.analysis_level == "participant" or settings.model_orders:
            written += _participant_reports(settings, failures)
    if written:
        LOGGER.info("Wrote %d report(s) in %s (e.g. %s).", len(written), settings.output_dir,
                    written[0].name)
    return written


def _guarded(name: str, build: Callable[[], Path], verbose: int) -> list[Path]:
    """``[build()]``, or ``[]`` and one warning line if it raises."""
    try:
        return [build()]
    except Exception as exc:  # noqa: BLE001 -- a report must not fail the run
        LOGGER.warning("No report for %s: %s: %s", name, type(exc).__name__, exc,
                       exc_info=verbose > 0)
        return []


def _participant_reports(settings, failures: Mapping[str, BaseException]) -> list[Path]:
    from workflows.reports.participant import failed_participant_report

    output_dir = Path(settings.output_dir)
    failed = {where.removeprefix("sub-"): exc for where, exc in failures.items()
              if where.startswith("sub-")}
    written = [path for label, exc in sorted(failed.items())
               for path in _guarded(f"sub-{label}", partial(failed_participant_report,
                                                            output_dir, label, exc),
                                    settings.verbose)]
    try:
        layout, labels = _reportable(output_dir, settings.participant_label)
    except FileNotFoundError as exc:
        LOGGER.warning("No participant reports: %s", exc)
        return written
    labels = [label for label in labels if label not in failed]
    if not settings.reports_only:
        labels = stale_participants(output_dir, labels)
    return written + _draw_participants(output_dir, labels, layout=layout,
                                        nprocs=settings.nprocs,
                                        fd_threshold=settings.fd_threshold,
                                        verbose=settings.verbose)


def _reportable(output_dir: Path, participant_label: Sequence[str]) -> tuple[object, list[str]]:
    """The derivatives' layout, and the participants named or else all with a QC table.

    Raises
    ------
    FileNotFoundError
        If ``output_dir`` holds no msica derivatives.
    """
    from workflows.bids.derivatives import derivatives_layout

    layout = derivatives_layout(output_dir)
    labels = list(participant_label) or sorted(layout.get_subjects(**_QC_QUERY))
    return layout, labels


#: The participant level's QC table: a participant report needs it (its level finished).
_QC_QUERY = {"desc": "denoise", "suffix": "qc", "extension": ".tsv"}


def stale_participants(output_dir: str | Path, labels: Sequence[str]) -> list[str]:
    """The participants whose report is missing, says they failed, or is older than one of
    their derivatives.

    A derivative is any file under ``sub-<label>/`` except the report's own figures.
    Derivatives that a rerun reproduces byte for byte keep their modification time
    (:func:`workflows.bids.atomic.atomic_path`), so their report is not stale.

    Parameters
    ----------
    output_dir : path-like
        msica derivatives root.
    labels : sequence of str
        Participant labels (without ``sub-``).

    Returns
    -------
    list of str
        The stale labels, in the order given.
    """
    from workflows.reports.participant import reports_failure

    output_dir = Path(output_dir)
    stale = []
    for label in labels:
        report = output_dir / f"sub-{label}.html"
        if not report.is_file() or reports_failure(report):
            stale.append(label)
            continue
        drawn = report.stat().st_mtime_ns
        folder = output_dir / f"sub-{label}"
        if any(path.stat().st_mtime_ns > drawn for path in folder.rglob("*")
               if path.is_file() and "figures" not in path.relative_to(folder).parts):
            stale.append(label)
    return stale


def _draw_participants(output_dir: Path, labels: Sequence[str], *, layout, nprocs: int,
                       fd_threshold: float, verbose: int) -> list[Path]:
    """Draw the participants' reports in up to ``nprocs`` processes; log those that fail.

    Each process draws one batch of participants from one index of the derivatives (its
    own, except in this process when ``nprocs`` is 1); loky processes start fresh
    interpreters, so matplotlib's Agg backend needs no display. They are stopped before
    this returns (:func:`workflows.execution.environment.stop_joblib_workers`): a loky
    executor left alive in this process made joblib in the Nipype workers forked from it
    later (the group level's classifiers, when one process runs both levels, as ``msica
    demo`` does) wait forever.
    """
    from joblib import Parallel, delayed

    from workflows.execution.environment import stop_joblib_workers

    if not labels:
        return []
    n_jobs = min(nprocs, len(labels))
    batches = [list(labels[i::n_jobs]) for i in range(n_jobs)]
    try:
        outcomes = Parallel(n_jobs=n_jobs)(
            delayed(_draw_batch)(output_dir, batch, layout=layout if n_jobs == 1 else None,
                                 fd_threshold=fd_threshold, verbose=verbose)
            for batch in batches)
    finally:
        if n_jobs > 1:
            stop_joblib_workers()
    written = []
    for label, outcome in sorted(item for batch in outcomes for item in batch):
        if isinstance(outcome, Path):
            written.append(outcome)
        else:
            LOGGER.warning("No report for sub-%s: %s", label, outcome)
    return written


def _draw_batch(output_dir: Path, labels: Sequence[str], *, layout, fd_threshold: float,
                verbose: int) -> list[tuple[str, Path | str]]:
    """``(label, report path or error line)`` for each participant (runs in a worker)."""
    import traceback

    from workflows.bids.derivatives import derivatives_layout
    from workflows.reports import participant

    out: list[tuple[str, Path | str]] = []
    with _plotting_quiet(verbose):
        for label in labels:
            try:
                if layout is None:
                    layout = derivatives_layout(output_dir)
                out.append((label, participant.participant_report(
                    output_dir, label, layout=layout, fd_threshold=fd_threshold)))
            except Exception as exc:  # noqa: BLE001 -- a report must not fail the run
                line = f"{type(exc).__name__}: {exc}"
                out.append((label, line + ("\n" + traceback.format_exc() if verbose else "")))
    return out


def check_report_inputs(settings) -> None:
    """Check that the derivatives ``--reports-only`` draws from are in OUTPUT_DIR.

    Parameters
    ----------
    settings : workflows.config.Settings
        ``analysis_level``, ``output_dir``, ``participant_label``, ``model_orders``.

    Raises
    ------
    FileNotFoundError
        Naming what is missing and the fix (exit code 66); nothing has been written.
    """
    from workflows.bids.naming import build_derivative_path

    output_dir = Path(settings.output_dir)
    fix = f"run the {settings.analysis_level} level without --reports-only first."
    try:
        layout, labels = _reportable(output_dir, settings.participant_label)
    except FileNotFoundError:
        raise FileNotFoundError(f"--reports-only: {output_dir} holds no msica derivatives "
                                f"(no dataset_description.json); {fix}") from None
    missing = []
    if settings.analysis_level == "group":
        group_qc = build_derivative_path(_QC_QUERY)
        if not (output_dir / group_qc).is_file():
            missing.append(group_qc)
    if settings.analysis_level == "participant" or settings.model_orders:
        with_qc = set(layout.get_subjects(**_QC_QUERY))
        missing += [f"the QC table of sub-{label}" for label in labels if label not in with_qc]
        if not labels:
            missing.append("participant QC tables (sub-*/func/*_desc-denoise_qc.tsv)")
    if missing:
        raise FileNotFoundError(f"--reports-only: {output_dir} lacks {', '.join(missing)}; "
                                f"{fix}")
