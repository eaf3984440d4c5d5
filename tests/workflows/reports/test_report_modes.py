"""--no-reports, --reports-only and the group level's refresh of stale participant reports,
on one small simulated run of both levels (4 participants, template mode)."""

import hashlib
import os
import shutil
import time
import warnings
from pathlib import Path

import pytest

from pipeline.exceptions import ConvergenceWarning
from workflows.cli import run
from workflows.config import Settings
from workflows.exit_codes import ExitCode
from workflows.reports import write_reports

pytestmark = pytest.mark.integration

LABELS = ("01", "02", "03", "04")


@pytest.fixture(scope="module")
def unreported(tmp_path_factory, simulated_levels) -> tuple[Path, Path]:
    """``(BIDS_DIR, OUTPUT_DIR)`` of both levels run with --no-reports."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # MOO-ICAR on toy data
        bids, out, _ = simulated_levels(
            tmp_path_factory.mktemp("unreported"), participant=["--no-reports"], templates=True,
            group=["--no-reports"], n_subjects=len(LABELS), n_volumes=60, grid_mm=12.0, seed=1)
    return bids, out


def _derivatives(out: Path) -> dict[str, str]:
    """SHA-256 of every file but the reports, their figures and the logs."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.suffix != ".html"
            and not {"figures", "logs"} & set(p.relative_to(out).parts)}


def _copy(unreported, tmp_path) -> tuple[Path, Path]:
    bids, out = unreported
    return bids, Path(shutil.copytree(out, tmp_path / "out"))


def test_no_reports_writes_every_derivative_and_no_html(unreported):
    _, out = unreported
    assert not list(out.rglob("*.html")) and not list(out.rglob("figures"))
    names = set(_derivatives(out))
    for label in LABELS:
        stem = f"sub-{label}/func/sub-{label}_task-rest_space-MNI152NLin2009cAsym"
        for scale in (4, 10):
            assert f"{stem}_scale-{scale}_desc-ica_components.nii.gz" in names
            assert f"{stem}_scale-{scale}_desc-ica_timeseries.tsv" in names
        for desc in ("denoise_qc", "multiscale_relmat", "dfnc_timeseries"):
            assert f"{stem}_desc-{desc}.tsv" in names
    for name in ("denoise_qc", "fnc_features", "timecourse_features", "dfnc_features",
                 "dfncstates_relmat"):
        assert f"group/desc-{name}.tsv" in names


def test_reports_only_redraws_the_reports_and_leaves_the_derivatives_identical(
        unreported, tmp_path, caplog):
    bids, out = _copy(unreported, tmp_path)
    before = _derivatives(out)
    work = str(tmp_path / "work")
    assert run([str(bids), str(out), "participant", "-w", work, "--reports-only",
                "--nprocs", "2"]) == ExitCode.OK
    assert sorted(p.name for p in out.glob("*.html")) == [f"sub-{i}.html" for i in LABELS]
    assert run([str(bids), str(out), "group", "-w", work, "--reports-only"]) == ExitCode.OK
    assert (out / "group.html").is_file()
    assert "No report" not in caplog.text
    assert '<section id="networks"' in (out / "sub-03.html").read_text()
    assert list((out / "sub-03" / "figures").glob("*_desc-multiscale_relmat.svg"))
    assert _derivatives(out) == before
    recorded = [p.read_text() for p in (out / "logs").glob("msica-*.toml")]
    assert sum("reports_only = true" in text for text in recorded) == 2
    assert sum("no_reports = true" in text for text in recorded) == 2  # the fixture's runs


def _refused(argv: list[str], capsys) -> str:
    assert run(argv) == ExitCode.NO_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("msica: error:")]
    assert len(errors) == 1
    return errors[0]


def test_reports_only_exits_66_and_writes_nothing_without_the_derivatives(
        unreported, tmp_path, capsys):
    bids, out = _copy(unreported, tmp_path)
    work = str(tmp_path / "work")
    empty = tmp_path / "empty"
    line = _refused([str(bids), str(empty), "participant", "-w", work, "--reports-only"], capsys)
    assert "no dataset_description.json" in line
    assert "run the participant level without --reports-only first" in line
    assert not empty.exists()

    (out / "group" / "desc-denoise_qc.tsv").unlink()
    before = _derivatives(out)
    line = _refused([str(bids), str(out), "group", "-w", work, "--reports-only"], capsys)
    assert "lacks group/desc-denoise_qc.tsv" in line
    assert "run the group level without --reports-only first" in line
    line = _refused([str(bids), str(out), "participant", "-w", work, "--reports-only",
                     "--participant-label", "01", "05"], capsys)
    assert "lacks the QC table of sub-05;" in line
    assert _derivatives(out) == before
    assert not list(out.rglob("*.html"))
    assert not any("reports_only = true" in p.read_text() for p in (out / "logs").glob("*.toml"))


def test_group_level_redraws_only_the_stale_participant_reports(unreported, tmp_path):
    """Data-driven mode: the group level rewrites participants' networks, then refreshes the
    reports of the participants whose derivatives are newer than their report, or that have
    none, in two processes."""
    bids, out = _copy(unreported, tmp_path)
    settings = Settings(bids_dir=bids, output_dir=out, analysis_level="participant",
                        work_dir=tmp_path / "work", nprocs=2)
    write_reports(settings, {})
    past = time.time() - 1000
    for path in out.rglob("*"):
        os.utime(path, (past, past))
    for label in LABELS:  # reports drawn after their derivatives
        os.utime(out / f"sub-{label}.html", (past + 100, past + 100))
    relmat = next((out / "sub-02" / "func").glob("*_desc-multiscale_relmat.tsv"))
    os.utime(relmat, (past + 200, past + 200))  # sub-02's FNC rewritten after its report
    (out / "sub-03.html").unlink()
    drawn = {label: (out / f"sub-{label}.html").stat().st_mtime_ns for label in ("01", "04")}

    group = Settings(bids_dir=bids, output_dir=out, analysis_level="group",
                     work_dir=tmp_path / "work", model_orders=(4, 10), nprocs=2)
    written = write_reports(group, {})
    assert sorted(p.name for p in written) == ["group.html", "sub-02.html", "sub-03.html"]
    assert {label: (out / f"sub-{label}.html").stat().st_mtime_ns for label in drawn} == drawn
    assert (out / "sub-02.html").stat().st_mtime > past + 200
    assert write_reports(group, {}) == [out / "group.html"]  # nothing stale any more


def test_participant_rerun_redraws_only_reports_that_its_outputs_or_failures_made_stale(
        unreported, tmp_path):
    """A rerun that reproduces the derivatives (cached work directory) leaves them and their
    reports untouched; a participant whose last run failed gets its full report back."""
    from workflows.bids.simulated import truth_template_options
    from workflows.reports.participant import failed_participant_report

    bids, out = _copy(unreported, tmp_path)
    work = out.parent.parent / "work"  # the fixture's cached work directory
    settings = Settings(bids_dir=bids, output_dir=out, analysis_level="participant",
                        work_dir=work, nprocs=2)
    write_reports(settings, {})
    failed_participant_report(out, "04", RuntimeError("killed"))
    before = {str(p): p.stat().st_mtime_ns for p in out.rglob("*")
              if p.is_file() and "logs" not in p.relative_to(out).parts}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert run([str(bids), str(out), "participant", "-w", str(work), "--nprocs", "2",
                    *truth_template_options(bids)]) == ExitCode.OK
    after = {path: Path(path).stat().st_mtime_ns for path in before}
    changed = sorted(Path(path).relative_to(out).as_posix() for path in before
                     if after[path] != before[path])
    assert changed[0] == "sub-04.html" and all(c.startswith("sub-04/figures/")
                                               for c in changed[1:]), changed
    assert '<section id="networks"' in (out / "sub-04.html").read_text()
