"""HTML reports of both levels, built from the derivatives on disk after a level finishes.

``OUTPUT_DIR/sub-<label>.html`` (figures in ``sub-<label>/figures/``) and
``OUTPUT_DIR/group.html`` (figures in ``group/figures/``), linked by relative paths so
the output folder can be moved or shared as it is. Figures are SVG or PNG files drawn
with matplotlib's Agg backend and nilearn (MNI152 template bundled with nilearn).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

__all__ = ["write_reports"]

LOGGER = logging.getLogger("msica.reports")


def write_reports(settings, failures: Mapping[str, BaseException]) -> list[Path]:
    """Write the reports of the level that just ran; never raise.

    Parameters
    ----------
    settings : workflows.config.Settings
        The run's settings (``analysis_level``, ``output_dir``, ``participant_label``,
        ``fd_threshold``, ``verbose``).
    failures : mapping of str to exception
        What failed in the run (``sub-<label>`` or a group node name).

    Returns
    -------
    list of Path
        Reports written. A report that cannot be built is logged as one warning line
        (with its traceback under ``-v``) and skipped: reports never fail a run.
    """
    written: list[Path] = []
    with warnings.catch_warnings():
        if not settings.verbose:
            warnings.simplefilter("ignore")  # plotting chatter; the derivatives are what count
        try:
            builders = list(_builders(settings, failures))
        except Exception as exc:  # noqa: BLE001 -- a report must not fail the run
            LOGGER.warning("No reports: %s: %s", type(exc).__name__, exc,
                           exc_info=settings.verbose > 0)
            builders = []
        for name, build in builders:
            try:
                written.append(build())
            except Exception as exc:  # noqa: BLE001 -- a report must not fail the run
                LOGGER.warning("No report for %s: %s: %s", name, type(exc).__name__, exc,
                               exc_info=settings.verbose > 0)
    if written:
        LOGGER.info("Wrote %d report(s) in %s (e.g. %s).", len(written), settings.output_dir,
                    written[0].name)
    return written


def _builders(settings, failures: Mapping[str, BaseException]):
    """``(name, build)`` pairs, one per report of this level."""
    output_dir = Path(settings.output_dir)
    if settings.analysis_level == "group":
        from workflows.reports.group import group_report

        yield "group", lambda: group_report(output_dir, failures)
        if not settings.model_orders:
            return
        # data-driven mode: the group level wrote the participants' networks; refresh their pages
    from workflows.bids.derivatives import derivatives_layout
    from workflows.reports.participant import failed_participant_report, participant_report

    failed = {where.removeprefix("sub-"): exc for where, exc in failures.items()
              if where.startswith("sub-")}
    try:
        layout = derivatives_layout(output_dir)
    except FileNotFoundError as exc:
        LOGGER.warning("No participant reports: %s", exc)
        layout = None
    labels = list(settings.participant_label) or (layout.get_subjects() if layout else [])
    for label in sorted(set(labels) | set(failed)):
        if label in failed:
            yield f"sub-{label}", (lambda lab=label: failed_participant_report(
                output_dir, lab, failed[lab]))
        elif layout is not None:
            yield f"sub-{label}", (lambda lab=label: participant_report(
                output_dir, lab, layout=layout, fd_threshold=settings.fd_threshold))
