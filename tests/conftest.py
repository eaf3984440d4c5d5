"""Project-wide test settings and fixtures."""

import logging
import os

# One BLAS/OpenMP thread per test process: pytest-xdist runs one process per core,
# and oversubscribed threads only wait on each other (10x slower on 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# No network at test time: Nipype interfaces built in the test process skip the online version check.
os.environ.setdefault("NIPYPE_NO_ET", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

torch.set_num_threads(1)
threadpool_limits(1)

RANDOM_STATE = 42
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (read-only real data); skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """Undo the root handlers that an in-process ``msica`` call installs.

    ``logging.basicConfig(force=True)`` binds a handler to the stderr that
    pytest captured for that test; a later test logging through it would write
    to a closed file.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
