"""Fixtures for classifier tests: FNC-like tables with planted edges, small and fast."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

RANDOM_STATE = 42
SCALES = {4: 4, 6: 6}  # scale -> number of networks (10 nodes, 45 edges)
N_SUBJECTS = 120
N_SITES = 4
PLANTED = ("s4-N1__s6-N2", "s6-N3__s6-N5", "s4-N2__s4-N4")  # cross, within fine, within coarse
EFFECT = 1.5  # shift of planted edges in patients, in SD units


def edge_names(scales=SCALES) -> list[str]:
    """Edge names ``"s<scale>-N<i>__s<scale>-N<j>"`` for all node pairs."""
    nodes = [f"s{s}-N{i + 1}" for s, n in scales.items() for i in range(n)]
    return [f"{a}__{b}" for a, b in itertools.combinations(nodes, 2)]


@dataclass
class PlantedCohort:
    """Feature table, participants table and the names of the planted edges."""

    features: pd.DataFrame
    participants: pd.DataFrame
    planted: tuple


def make_cohort(n_subjects=N_SUBJECTS, n_sites=N_SITES, effect=EFFECT, n_extra=0,
                random_state=RANDOM_STATE) -> PlantedCohort:
    """Balanced patients/controls per site; planted edges shifted by ``effect`` SD in patients.

    Patients also get medication (medA/medB, planted on the second planted edge,
    leaving the patient mean unchanged) and response (three classes for multi-class tests).
    Sites add a random offset to every edge (no label information).
    """
    rng = np.random.RandomState(random_state)
    names = edge_names() + [f"s8-X{i}__s8-Y{i}" for i in range(n_extra)]
    ids = [f"sub-{i + 1:03d}" for i in range(n_subjects)]
    site = np.array([f"site{i % n_sites + 1}" for i in range(n_subjects)])
    diagnosis = np.empty(n_subjects, dtype=object)
    for s in np.unique(site):
        members = np.flatnonzero(site == s)
        diagnosis[members[0::2]] = "patient"
        diagnosis[members[1::2]] = "control"
    X = rng.randn(n_subjects, len(names))
    site_offset = {s: 0.5 * rng.randn(len(names)) for s in np.unique(site)}
    X += np.vstack([site_offset[s] for s in site])
    patient = diagnosis == "patient"
    cols = [names.index(p) for p in PLANTED]
    X[np.ix_(patient, cols)] += effect
    medication = np.full(n_subjects, "n/a", dtype=object)
    pat_idx = np.flatnonzero(patient)
    medication[pat_idx[0::2]] = "medA"
    medication[pat_idx[1::2]] = "medB"
    X[medication == "medA", cols[1]] -= effect  # medication: medA vs medB differ by 2 effect
    X[medication == "medB", cols[1]] += effect
    response = np.full(n_subjects, "n/a", dtype=object)
    response[pat_idx] = np.array(["good", "partial", "none"])[np.arange(len(pat_idx)) % 3]
    for level, col in zip(("good", "partial"), cols[:2], strict=True):
        X[response == level, col] += 2 * effect
    participants = pd.DataFrame({
        "participant_id": ids, "site": site,
        "age": rng.uniform(20, 60, n_subjects).round(1),
        "sex": rng.choice(["F", "M"], n_subjects),
        "diagnosis": diagnosis, "medication": medication, "response": response,
        "mean_fd": rng.uniform(0.05, 0.3, n_subjects),
    })
    features = pd.DataFrame(X, index=pd.Index(ids, name="participant_id"), columns=names)
    return PlantedCohort(features=features, participants=participants, planted=PLANTED)


@pytest.fixture(scope="session")
def cohort() -> PlantedCohort:
    """The default planted cohort (read-only)."""
    return make_cohort()


@pytest.fixture
def fast_grid() -> dict:
    """Small search settings for FastSearchClassifier in tests."""
    return {"k_grid": (3, 10, "all"), "param_grids": {"logistic_l2": {"C": [0.01, 1.0]}},
            "inner_cv": 3}


def make_timeseries_cohort(n_per_site=30, n_sites=3, n_nodes=6, n_volumes=120, effect=0.6,
                           random_state=RANDOM_STATE):
    """Participants' covariances (a covariance table) with a planted coupling and site effects.

    Patients have nodes 0 and 1 coupled (``effect``); each site scales every
    node by its own gains and adds its own coupling between nodes 2 and 3 (no
    label information), as scanners and sites do.

    Returns
    -------
    features : pandas.DataFrame
        :func:`~pipeline.classify.connectivity.covariance_table` of the participants.
    participants : pandas.DataFrame
    """
    from pipeline.classify.connectivity import covariance_table, participant_covariances

    rng = np.random.RandomState(random_state)
    n = n_per_site * n_sites
    site = np.repeat([f"site{i + 1}" for i in range(n_sites)], n_per_site)
    diagnosis = np.tile(["patient", "control"], n // 2 + 1)[:n]
    gains = {s: np.exp(0.5 * rng.randn(n_nodes)) for s in np.unique(site)}
    site_coupling = {s: 0.8 * rng.rand() for s in np.unique(site)}
    series = []
    for i in range(n):
        mixing = np.eye(n_nodes) + 0.2 * rng.randn(n_nodes, n_nodes)
        if diagnosis[i] == "patient":
            mixing[1, 0] += effect
        mixing[3, 2] += site_coupling[site[i]]
        series.append(rng.randn(n_volumes, n_nodes) @ mixing.T * gains[site[i]])
    ids = [f"sub-{i + 1:03d}" for i in range(n)]
    participants = pd.DataFrame({"participant_id": ids, "site": site, "diagnosis": diagnosis,
                                 "age": rng.uniform(20, 60, n).round(1)})
    labels = [f"s{n_nodes}-N{j + 1}" for j in range(n_nodes)]
    return covariance_table(participant_covariances(series), labels, ids), participants
