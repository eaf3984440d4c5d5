"""HTML reports: written by both levels from a small simulated run, with no broken link,
every section present, and every figure decoded by a real headless browser (chromium)."""

import os
import re
import shutil
import socket
import subprocess
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.exceptions import ConvergenceWarning
from workflows.reports import write_reports
from workflows.reports.html import Section, broken_links, figure, write_page

PARTICIPANT_SECTIONS = ("qc", "carpet", "networks", "fnc", "dfnc", "methods")
GROUP_SECTIONS = ("qc", "networks", "fnc", "dfnc", "classifiers", "introspection", "methods")


def _no_network(sock, address):
    raise OSError(f"reports must not download anything (tried to connect to {address})")


@pytest.fixture(scope="module")
def reported(tmp_path_factory, simulated_levels) -> Path:
    """Both levels on 12 simulated participants (the fewest the site-aware classifier takes)."""
    root = tmp_path_factory.mktemp("reports")
    nilearn_data = root / "nilearn_data"
    nilearn_data.mkdir()
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        # MOO-ICAR may stop a hair short of its tolerance on this toy data (a UserWarning,
        # which pytest's settings turn into an error); the reports are what is tested here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        patch.setenv("NILEARN_DATA", str(nilearn_data))
        patch.setattr(socket.socket, "connect", _no_network)
        _, out, _ = simulated_levels(
            root, participant=["--save-denoised"], templates=True,
            group=["--targets", "diagnosis", "--n-permutations", "2", "--introspect"],
            n_subjects=12, n_volumes=60, grid_mm=12.0, seed=1)
    assert not any(nilearn_data.iterdir()), "nilearn downloaded data for the reports"
    return out


def _sections(page: Path) -> set[str]:
    return set(re.findall(r'<section id="([\w-]+)"', page.read_text()))


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (.ci/run installs it with apt-get when run as "
                    "root); the headless-browser check needs it")
    return path


def _render(chromium: str, page: Path, tmp_path: Path) -> str:
    """Screenshot ``page`` and return its DOM after load, both in headless chromium."""
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000"]
    env = {**os.environ, "HOME": str(tmp_path)}
    screenshot = tmp_path / f"{page.stem}.png"
    subprocess.run([*common, f"--screenshot={screenshot}", "--window-size=1200,3000",
                    page.as_uri()], check=True, capture_output=True, timeout=120, env=env)
    assert screenshot.stat().st_size > 20_000, f"{page.name}: blank screenshot"
    return subprocess.run([*common, "--dump-dom", page.as_uri()], check=True,
                          capture_output=True, text=True, timeout=120, env=env).stdout


def test_reports_of_both_levels(reported, tmp_path):
    """One test on the module's run: with pytest-xdist, separate tests could each rebuild it."""
    out = reported
    pages = sorted(p.name for p in out.glob("*.html"))
    assert pages == ["group.html"] + [f"sub-{i:02d}.html" for i in range(1, 13)]
    assert set(PARTICIPANT_SECTIONS) <= _sections(out / "sub-01.html")
    assert set(GROUP_SECTIONS) <= _sections(out / "group.html")

    participant = (out / "sub-01.html").read_text()
    for desc in ("motion_qc.svg", "tsnr_map.png", "carpet_bold.png", "multiscale_relmat.svg",
                 "dfnc_timeseries.png", "scale-4_desc-ica_components.png",
                 "scale-10_desc-ica_components.png"):
        assert re.search(rf'<img src="sub-01/figures/sub-01_[^"]*{desc}"', participant), desc
    group = (out / "group.html").read_text()
    for name in ("desc-tree_labels.svg", "desc-groupmean_relmat.svg", "desc-dfncstates_relmat.svg",
                 "desc-diagnosiscalibration_metrics.svg", "desc-diagnosisbiomarkers_features.svg",
                 "desc-diagnosisintrospect_spectrum.svg", "scale-10_desc-networks_components.png"):
        assert f'<img src="group/figures/{name}"' in group, name
    assert "permutation p =" in group and '<a href="sub-01.html">' in group
    methods = group.split('id="methods"')[1]
    assert "MOO-ICAR, [1]" in methods and "Software versions: python" in methods
    assert "nilearn 0." in methods and '<ol class="refs"><li>Du Y' in methods

    assert {p: broken_links(out / p) for p in pages} == {p: [] for p in pages}

    chromium = _chromium()
    for page in (out / "sub-01.html", out / "group.html"):
        dom = _render(chromium, page, tmp_path)
        n_images = len(re.findall(r"<img ", page.read_text()))
        assert n_images >= 5
        assert f'data-figures-count="{n_images}/{n_images}"' in dom, page.name
        assert 'data-figures="ok"' in dom, page.name


def test_failed_participant_gets_a_short_report_and_a_broken_report_fails_nothing(
        tmp_path, caplog, monkeypatch):
    import workflows.reports.participant as participant
    from workflows.bids.provenance import write_dataset_description

    def broken(*args, **kwargs):
        raise ValueError("cannot draw")

    monkeypatch.setattr(participant, "participant_report", broken)
    write_dataset_description(tmp_path, source_datasets={"raw": tmp_path / "bids"})
    settings = SimpleNamespace(analysis_level="participant", output_dir=tmp_path,
                               participant_label=("01",), model_orders=(), reports_only=False,
                               nprocs=1, fd_threshold=0.5, verbose=0)
    written = write_reports(settings, {"sub-99": FileNotFoundError("No confounds found")})
    assert written == [tmp_path / "sub-99.html"]
    text = (tmp_path / "sub-99.html").read_text()
    assert "failed for sub-99: No confounds found" in text
    assert "No report for sub-01: ValueError: cannot draw" in caplog.text
    assert broken_links(tmp_path / "sub-99.html") == []


def test_broken_links_finds_missing_files_anchors_and_external_links(tmp_path):
    (tmp_path / "figures").mkdir()
    good = tmp_path / "figures" / "a.svg"
    good.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    page = write_page(tmp_path / "r.html", "t", "s", [
        Section("one", "One", figure(good, tmp_path, "fine")
                + figure(tmp_path / "figures" / "gone.png", tmp_path, "missing")
                + '<a href="#nowhere">x</a><a href="https://example.org">y</a>'
                + '<object data="figures/a.svg"></object>'),
    ])
    assert broken_links(page) == ["figures/gone.png", "figures/gone.png", "#nowhere",
                                  "https://example.org"]
    assert '<a href="#one">One</a>' in page.read_text()  # the navigation bar links resolve


_REPORTS_THEN_JOBLIB_IN_MULTIPROC = """
import sys
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from workflows.reports import _draw_participants


def loky_sum():
    from joblib import Parallel, delayed

    from workflows.execution.environment import stop_joblib_workers

    total = sum(Parallel(n_jobs=2, backend="loky")(delayed(abs)(-i) for i in range(4)))
    stop_joblib_workers()
    return total


root = Path(sys.argv[1])
written = _draw_participants(root / "absent", ["01", "02"], layout=None, nprocs=2,
                             fd_threshold=0.5, verbose=0)
assert written == [], written  # nothing to draw from: each participant's failure is logged
node = pe.Node(niu.Function(function=loky_sum, output_names=["total"]), name="loky_sum")
workflow = pe.Workflow(name="after_reports_wf", base_dir=str(root))
workflow.add_nodes([node])
graph = workflow.run(plugin="MultiProc", plugin_args={"n_procs": 2})
print("total", next(iter(graph.nodes)).result.outputs.total)
"""


def test_parallel_reports_leave_joblib_usable_in_forked_workers(tmp_path, run_python):
    """Drawing reports in 2 processes, then joblib in a Nipype MultiProc worker forked after it
    (``msica demo`` runs both levels in one process: the group level's classifier nodes run
    joblib) must not hang, as it did while the reports left a loky executor alive."""
    script = tmp_path / "reports_then_joblib.py"  # a file: Nipype reads the node's source
    script.write_text(_REPORTS_THEN_JOBLIB_IN_MULTIPROC)
    done = run_python([str(script), str(tmp_path)],
                      hang="joblib hung in a Nipype worker forked after the reports were drawn")
    assert "No report for sub-01" in done.stderr and "No report for sub-02" in done.stderr
    assert "total 6" in done.stdout
