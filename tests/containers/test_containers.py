"""Build containers/Dockerfile and containers/msica.def for real and run msica inside them.

The images are built with ``local-container`` (podman and Apptainer without a registry, see
``../shared/tools/local-container``), which needs root and Debian's apt. One test function does
build -> run -> SIF -> run in sequence, so the whole chain stays in one pytest-xdist worker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOCAL_CONTAINER = Path(
    os.environ.get("MSICA_LOCAL_CONTAINER", REPO.parent / "shared" / "tools" / "local-container"))
WHEELHOUSE = Path("/opt/wheels")  # this machine's torch CPU wheel (download.pytorch.org is unreachable)
STEP_TIMEOUT_S = 1800


def _cannot_build() -> str | None:
    """Why this machine cannot build the images, or None when it can."""
    if os.geteuid() != 0:
        return "local-container builds with podman and Apptainer as root; run the tests as root"
    if not LOCAL_CONTAINER.is_file():
        return f"{LOCAL_CONTAINER} not found; set MSICA_LOCAL_CONTAINER to the local-container script"
    if shutil.which("apt-get") is None:
        return "local-container installs podman and apptainer with apt-get (Debian); none here"
    return None


def _lc(*args: str, cwd: Path = REPO, timings: dict[str, float], step: str) -> str:
    """Run ``local-container ARGS`` and return its stdout; fail with its output on error."""
    start = time.monotonic()
    proc = subprocess.run(["bash", str(LOCAL_CONTAINER), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=STEP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    timings[step] = timings.get(step, 0.0) + time.monotonic() - start
    assert proc.returncode == 0, (
        f"local-container {' '.join(args)} exited {proc.returncode}:\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def _participant_args(bids: str, out: str, work: str) -> list[str]:
    """Smallest participant-level run on ``msica simulate`` output: one participant, one scale."""
    truth = f"{bids}/derivatives/truth"
    return [bids, out, "participant", "--participant-label", "01", "-w", work, "--nprocs", "1",
            "--template", f"{truth}/scale-4_desc-truth_components.nii.gz",
            "--template-labels", f"{truth}/scale-4_desc-truth_labels.tsv"]


def _relmat(out: Path) -> Path:
    """The participant's multi-scale FNC matrix, the last output of the participant level."""
    found = sorted(out.glob("sub-01/func/sub-01_*_desc-multiscale_relmat.tsv"))
    assert len(found) == 1, f"no (or several) relmat under {out}: {found}"
    return found[0]


def test_requirements_match_tested_environment():
    """containers/requirements.txt pins what this environment (where the tests pass) runs."""
    generated = subprocess.run([sys.executable, str(REPO / "containers" / "pin_requirements.py")],
                               capture_output=True, text=True, check=True).stdout
    pinned = (REPO / "containers" / "requirements.txt").read_text()
    assert pinned == generated, (
        "containers/requirements.txt is out of date; regenerate it with "
        ".venv/bin/python containers/pin_requirements.py > containers/requirements.txt")
    assert not any(line.startswith(("torch==", "msica==")) for line in pinned.splitlines())


def test_docker_image_and_sif_run_msica(tmp_path):
    """Docker image: non-root entry point msica, --version, a simulated participant run with a
    read-only root; SIF from msica.def (its %test runs), then the same run with apptainer run."""
    reason = _cannot_build()
    if reason:
        pytest.skip(reason)
    timings: dict[str, float] = {}
    size_mb = float("nan")
    tag = f"localhost/msica:test-{uuid.uuid4().hex[:8]}"
    tmp_path.chmod(0o755)  # Apptainer runs as an unprivileged user and binds this directory
    data = tmp_path / "data"
    data.mkdir(mode=0o777)
    data.chmod(0o777)  # written by the containers' non-root users
    sif = tmp_path / "msica.sif"
    build_opts = []
    if any(WHEELHOUSE.glob("torch-*+cpu-*.whl")):
        build_opts = ["-v", f"{WHEELHOUSE}:/wheels:ro", "--build-arg", "WHEELHOUSE=/wheels",
                      "--build-arg", "TORCH_INDEX="]
    try:
        _lc("base", timings=timings, step="base")
        _lc("build", "containers/Dockerfile", ".", tag, *build_opts, timings=timings, step="build")
        config = _lc("podman", "image", "inspect", "--format",
                     "{{.Config.User}} {{json .Config.Entrypoint}} {{.Size}}", tag,
                     timings=timings, step="inspect").split()
        assert config[:2] == ["msica", '["msica"]']
        size_mb = int(config[2]) / 1e6

        out = _lc("run", tag, "--version", timings=timings, step="run --version")
        assert out.strip().splitlines()[-1] == f"msica {version('msica')}"
        # arbitrary uid without a passwd entry, read-only root and no tmpfs (docker's --read-only):
        # only the bound directory is writable, not HOME nor /tmp
        opts = ["--read-only", "--read-only-tmpfs=false", "--user", "4242:4242",
                "-v", f"{data}:/data", "--"]
        _lc("run", *opts, tag, "simulate", "/data/bids", "--n-subjects", "4", "--n-sites", "1",
            "--n-volumes", "60", "--grid-mm", "12", timings=timings, step="run simulate")
        _lc("run", *opts, tag, *_participant_args("/data/bids", "/data/out", "/data/work"),
            timings=timings, step="run participant")
        relmat = _relmat(data / "out")
        assert relmat.stat().st_uid == 4242 and relmat.stat().st_size > 0

        # SIF from the image through the definition file; the build runs its %test
        log = _lc("def", "containers/msica.def", str(sif), tag, timings=timings, step="sif (def)")
        assert f"msica {version('msica')}" in log and "Participant level finished" in log
        labels = _lc("apptainer", "inspect", "--labels", sif.name, cwd=tmp_path,
                     timings=timings, step="inspect sif")
        assert "org.opencontainers.image.title: msica" in labels
        # the runscript passes arguments through unchanged (no shell re-evaluation)
        _lc("apptainer", "run", "--cleanenv", "-B", f"{data}:/data", sif.name,
            *_participant_args("/data/bids", "/data/out-sif", "/data/work-sif"),
            cwd=tmp_path, timings=timings, step="apptainer run participant")
        assert _relmat(data / "out-sif").read_text() != ""
    finally:
        subprocess.run(["bash", str(LOCAL_CONTAINER), "podman", "rmi", "--force", tag],
                       capture_output=True, stdin=subprocess.DEVNULL)
        sif_mb = sif.stat().st_size / 1e6 if sif.exists() else float("nan")
        sif.unlink(missing_ok=True)
        print("container timings (s):", {k: round(v, 1) for k, v in timings.items()},
              f"image {size_mb:.0f} MB, SIF {sif_mb:.0f} MB")
