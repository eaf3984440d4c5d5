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

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits

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


@pytest.fixture(scope="session")
def planted_fnc_cohort():
    """Make FNC features with a planted group effect: ``make(n_per_group, n_edges, n_signal)``.

    ``2 * n_per_group`` participants (controls and patients alternate) by ``n_edges``
    edges drawn from a standard normal; the first ``n_signal`` edges are shifted by
    +1.5 SD in patients. Each call returns new ``(features, participants)``:
    features indexed by participant_id, the edges then an ``age`` covariate column
    (to be ignored by the models); participants with diagnosis, medication
    (``yes``/``no`` in patients, missing in controls), age and site.
    """
    def make(n_per_group: int, n_edges: int, n_signal: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        rng = np.random.default_rng(RANDOM_STATE)
        n = 2 * n_per_group
        ids = [f"sub-{i:02d}" for i in range(1, n + 1)]
        diagnosis = np.array(["control", "patient"] * n_per_group)
        X = rng.standard_normal((n, n_edges))
        X[diagnosis == "patient", :n_signal] += 1.5
        features = pd.DataFrame(X, index=pd.Index(ids, name="participant_id"),
                                columns=[f"s4-N{i}__s4-N{i + 1}" for i in range(n_edges)])
        features["age"] = rng.integers(20, 60, n)
        medication = np.where(diagnosis == "patient", np.repeat(["yes", "no"], n_per_group),
                              None)
        participants = pd.DataFrame({"participant_id": ids, "diagnosis": diagnosis,
                                     "medication": medication,
                                     "age": features["age"].to_numpy(),
                                     "site": ["a", "b"] * n_per_group})
        return features, participants

    return make
