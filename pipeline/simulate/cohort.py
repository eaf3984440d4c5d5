"""Simulated multi-site cohort with known networks, states and planted group effects."""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline._docs import fill_doc
from pipeline._validation import check_int, check_random_state, check_type, derive_seeds
from pipeline.simulate.confounds import (
    confounds_table,
    motion_leak_patterns,
    simulate_motion,
    simulate_physio,
)
from pipeline.simulate.connectivity import (
    apply_effects,
    build_hierarchy,
    node_correlation,
    shared_latent_correlation,
    state_latent_correlations,
)
from pipeline.simulate.effects import describe_effects, design_effects, effect_entries_for
from pipeline.simulate.maps import combine_children, load_grid_mask, place_networks, render_maps
from pipeline.simulate.timecourses import hrf_kernel, neural_to_bold, sample_latent, state_sequence

__all__ = ["SimulatedCohort", "SimulatedSubject", "simulate_cohort"]

LOGGER = logging.getLogger("msica.pipeline")

#: Fraction of a fine network's neural variance shared with its ancestors.
SHARED_VARIANCE = 0.5
#: Peak percent signal change of a network (times a per-participant factor in [0.8, 1.2]).
SIGNAL_PCT = 2.5
#: Standard deviation (mm) of the per-participant shift of the whole map set
#: and, independently, of each blob.
JITTER_MM = 1.0
#: Mean white-noise level, percent of baseline (times participant and site factors).
NOISE_PCT = 1.0
#: Global slow drift (percent, SD of the linear term) and physiological noise (percent).
DRIFT_PCT = 0.05
PHYSIO_PCT = 0.03
#: Global intensity spike (percent per mm of framewise displacement above 0.5 mm).
SPIKE_PCT_PER_MM = 0.3
#: Burn-in (s) so that the HRF has filled before the first volume.
_BURN_S = 32.0


@dataclass
class SimulatedSubject:
    """One simulated participant (all arrays on in-mask voxels).

    Attributes
    ----------
    participant_id : str
        ``"sub-01"``...
    site : str
    bold : ndarray of shape (n_volumes, n_voxels), float32
        Preprocessed-like BOLD in scanner units (baseline ~1000 times the site scale).
    maps : dict of int to ndarray of shape (n_networks, n_voxels)
        True participant maps per scale (peak 1), jittered from the group maps.
    timecourses : dict of int to ndarray of shape (n_volumes, n_networks)
        True (HRF-convolved) network time courses per scale.
    amplitudes : ndarray of shape (n_fine,)
        Percent signal change of each finest network at its map peak.
    confounds : DataFrame of shape (n_volumes, n_columns)
        fMRIPrep-style confounds.
    confounds_metadata : dict
        Content of fMRIPrep's confounds JSON (aCompCor entries).
    states : ndarray of shape (n_volumes,), int
        Connectivity state of each volume.
    fnc : ndarray of shape (n_nodes_all, n_nodes_all)
        Expected static correlation of the true time courses of all nodes
        (scales concatenated coarse first), given this participant's group
        memberships and state occupancy.
    noise_level : float
        Standard deviation of the white noise, in percent of the baseline.
    """

    participant_id: str
    site: str
    bold: np.ndarray
    maps: dict
    timecourses: dict
    amplitudes: np.ndarray
    confounds: pd.DataFrame
    confounds_metadata: dict
    states: np.ndarray
    fnc: np.ndarray
    noise_level: float


@dataclass
class SimulatedCohort:
    """A simulated cohort and its ground truth (see :func:`simulate_cohort`).

    Attributes
    ----------
    mask : ndarray of shape (nx, ny, nz), bool
    affine : ndarray of shape (4, 4)
    t_r : float
    scales : tuple of int
        Number of networks per scale, coarse to fine.
    group_maps : dict of int to ndarray of shape (n_networks, n_voxels)
    labels : DataFrame
        Columns ``index`` (1-based within scale), ``scale``, ``label``
        (``N<index>``; FNC node names add the scale, ``s<scale>-N<index>``),
        ``parent`` (label at the next coarser scale, or ``"n/a"``).
    participants : DataFrame
        ``participant_id, site, age, sex, diagnosis, medication, response``.
    effects : DataFrame
        Planted effects: ``target, level, reference, scale_a, label_a, scale_b,
        label_b, delta, delta_latent, direction``; ``delta`` is the expected
        change of the correlation of the two true time courses (level minus
        reference, states averaged); ``node_a``/``node_b`` index the nodes of
        ``labels`` (and of ``SimulatedSubject.fnc``).
    subjects : list of SimulatedSubject
    state_fnc : ndarray of shape (n_states, n_fine, n_fine)
        Correlation of the finest-scale time courses in each state (reference
        groups, i.e. without planted effects).
    state_fnc_all : ndarray of shape (n_states, n_nodes_all, n_nodes_all)
        The same for all nodes of all scales (coarse first).
    sites : DataFrame
        Site effects: ``site, baseline_scale, signal_gain, noise_scale``.
    parameters : dict
        Arguments of the call (for sidecars).
    """

    mask: np.ndarray
    affine: np.ndarray
    t_r: float
    scales: tuple
    group_maps: dict
    labels: pd.DataFrame
    participants: pd.DataFrame
    effects: pd.DataFrame
    subjects: list
    state_fnc: np.ndarray
    state_fnc_all: np.ndarray
    sites: pd.DataFrame
    parameters: dict = field(default_factory=dict)

    @property
    def node_labels(self) -> list[str]:
        """Node names ``s<scale>-<label>`` of all scales, coarse first (order of ``fnc``)."""
        return [f"s{scale}-{label}" for scale, label in
                zip(self.labels["scale"], self.labels["label"], strict=True)]


def _check_scales(scales) -> tuple[int, ...]:
    check_type("scales", scales, (tuple, list))
    scales = tuple(scales)
    ok = len(scales) >= 2 and all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                                  for s in scales)
    if ok:
        ok = scales[0] >= 2 and all(b > a for a, b in zip(scales[:-1], scales[1:])) and scales[-1] <= 40
    if not ok:
        raise ValueError(
            "'scales' must be a sequence of at least two strictly increasing ints in [2, 40] "
            f"(networks per scale, coarse to fine). Got {scales!r}. Use e.g. (4, 10)."
        )
    return tuple(int(s) for s in scales)


def _participants(n_subjects: int, n_sites: int, rng: np.random.RandomState) -> pd.DataFrame:
    width = max(2, len(str(n_subjects)))
    site_idx = (np.arange(n_subjects) * n_sites) // n_subjects
    diagnosis = np.empty(n_subjects, dtype=object)
    for s in range(n_sites):
        members = rng.permutation(np.flatnonzero(site_idx == s))
        half = len(members) // 2
        diagnosis[members[:half]] = "patient"
        diagnosis[members[half:]] = "control"
    medication = np.full(n_subjects, "n/a", dtype=object)
    response = np.full(n_subjects, "n/a", dtype=object)
    patients = rng.permutation(np.flatnonzero(diagnosis == "patient"))
    medication[patients[0::2]] = "medA"
    medication[patients[1::2]] = "medB"
    for med in ("medA", "medB"):
        group = rng.permutation(np.flatnonzero(medication == med))
        response[group[: (len(group) + 1) // 2]] = "responder"
        response[group[(len(group) + 1) // 2:]] = "non-responder"
    return pd.DataFrame({
        "participant_id": [f"sub-{i + 1:0{width}d}" for i in range(n_subjects)],
        "site": [f"site{s + 1}" for s in site_idx],
        "age": rng.randint(18, 66, size=n_subjects),
        "sex": rng.choice(["M", "F"], size=n_subjects),
        "diagnosis": diagnosis,
        "medication": medication,
        "response": response,
    })


def _labels(scales, parents) -> pd.DataFrame:
    rows = []
    for j, n in enumerate(scales):
        for i in range(n):
            parent = "n/a" if j == 0 else f"N{parents[j - 1][i] + 1}"
            rows.append({"index": i + 1, "scale": n, "label": f"N{i + 1}", "parent": parent})
    return pd.DataFrame(rows)


def _nested_maps(fine: np.ndarray, layout_parents, scales) -> dict:
    maps = {scales[-1]: fine}
    current = fine
    for j in range(len(scales) - 2, -1, -1):
        current = combine_children(current, layout_parents[j], scales[j])
        maps[scales[j]] = current
    return dict(sorted(maps.items()))


def _smooth_field(xyz: np.ndarray, rng: np.random.RandomState, n_waves: int = 4) -> np.ndarray:
    """Smooth random field in about [-1, 1] (sum of long-wavelength plane waves)."""
    out = np.zeros(len(xyz))
    for _ in range(n_waves):
        k = rng.normal(size=3)
        k *= 2 * np.pi / (rng.uniform(80, 160) * np.linalg.norm(k))
        out += np.cos(xyz @ k + rng.uniform(0, 2 * np.pi))
    return out / n_waves


@fill_doc
def simulate_cohort(*, n_subjects: int = 24, n_sites: int = 2, n_volumes: int = 150,
                    t_r: float = 2.0, grid_mm: float = 6.0, scales=(4, 10),
                    n_states: int = 3, effect_size: float = 1.0,
                    random_state=0) -> SimulatedCohort:
    """Simulate a SimTB-like multi-site resting-state cohort with known ground truth.

    Parameters
    ----------
    n_subjects : int, default=24
        Number of participants (>= 4); half of each site are patients.
    n_sites : int, default=2
        Number of acquisition sites (1 <= n_sites <= n_subjects).
    n_volumes : int, default=150
        Volumes per run (>= 30).
    %(t_r)s
        Default 2.0.
    grid_mm : float, default=6.0
        Isotropic voxel size of the MNI-like grid, in [2, 12] mm; 6 mm gives
        about 8.7k in-mask voxels.
    scales : sequence of int, default=(4, 10)
        Networks per scale, strictly increasing (coarse to fine); each network
        is split into children at the next finer scale.
    n_states : int, default=3
        Number of dynamic connectivity states (>= 1).
    effect_size : float, default=1.0
        Multiplies every planted group effect; 0 gives a null cohort.
    %(random_state)s

    Returns
    -------
    SimulatedCohort

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If an argument is out of range.

    Notes
    -----
    Finest-scale neural signals are ``sqrt(0.5)`` times the signal of their
    ancestors plus ``sqrt(0.5)`` times their own, so group ICA at a low model
    order finds the coarse networks and at a high order the fine ones. Latent
    signals switch between ``n_states`` correlation structures in blocks of
    40-60 volumes (at most ``n_volumes / n_states``), every state visited once
    per cycle, so every participant spends about the same time in each state.
    Each state splits the domains (coarsest networks) into two anti-correlated
    modules, a different split per state, through the own signals of the
    finest networks that no planted effect touches, on top of a weak coupling
    shared by all states (see
    :func:`pipeline.simulate.connectivity.state_latent_correlations`); their
    finest-scale FNC matrices correlate about 0.5-0.6 with each other (the
    hierarchy they share), and windowed FNC of 30 TRs separates them. Signals
    are convolved with SPM's canonical HRF. The BOLD signal
    is ``baseline * (1 + (networks + motion + physiology + drift + noise) / 100)``.

    Examples
    --------
    >>> cohort = simulate_cohort(n_subjects=4, n_volumes=40, grid_mm=10.0, random_state=0)
    >>> cohort.subjects[0].bold.shape[0]
    40
    """
    n_subjects = check_int("n_subjects", n_subjects, 4, fix="Simulate at least 4 participants.")
    n_sites = check_int("n_sites", n_sites, 1, fix="Use at least one site.")
    if n_sites > n_subjects:
        raise ValueError(
            f"'n_sites' must be <= n_subjects={n_subjects}. Got {n_sites}. Lower --n-sites."
        )
    n_volumes = check_int("n_volumes", n_volumes, 30, fix="Simulate longer runs.")
    n_states = check_int("n_states", n_states, 1, fix="Use at least one state.")
    check_type("t_r", t_r, numbers.Real)
    if not 0.1 <= t_r <= 10:
        raise ValueError(f"'t_r' must be in [0.1, 10] seconds. Got {t_r}.")
    check_type("grid_mm", grid_mm, numbers.Real)
    if not 2 <= grid_mm <= 12:
        raise ValueError(f"'grid_mm' must be in [2, 12] mm. Got {grid_mm}. Use 6 for ~8.7k voxels.")
    check_type("effect_size", effect_size, numbers.Real)
    if effect_size < 0:
        raise ValueError(f"'effect_size' must be >= 0. Got {effect_size}.")
    scales = _check_scales(scales)
    rng = check_random_state(random_state)
    seeds = derive_seeds(rng, 6 + n_subjects)
    design_rng = np.random.RandomState(seeds[0])

    mask, affine = load_grid_mask(float(grid_mm))
    xyz = np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]
    layout = place_networks(mask, affine, scales, design_rng)
    group_maps = _nested_maps(render_maps(mask, affine, layout.centers, layout.sigmas),
                              layout.parents, scales)
    labels = _labels(scales, layout.parents)
    participants = _participants(n_subjects, n_sites, np.random.RandomState(seeds[1]))

    model = build_hierarchy(scales, layout.parents, SHARED_VARIANCE)
    state_rng = np.random.RandomState(seeds[2])
    effects, shared = design_effects(model, shared_latent_correlation(model, state_rng),
                                     float(effect_size), np.random.RandomState(seeds[3]))
    # States act on the own factors of the finest networks that no planted effect
    # touches, so the planted edges keep their size and state occupancy hardly
    # moves them.
    touched = set(effects["node_a"]) | set(effects["node_b"])
    free = np.array([i for i in range(model.offsets[-2], model.offsets[-1]) if i not in touched])
    domains = model.ancestors[0][free - model.offsets[-2]]
    if n_states > 1 and np.unique(domains).size < 2:
        LOGGER.warning("Scales %s leave no two domains free of planted effects: the %d "
                       "connectivity states are identical. Use more networks.", scales, n_states)
    base = state_latent_correlations(shared, free, domains, n_states, state_rng)
    effects = describe_effects(model, base, effects, labels)
    state_fnc_all = node_correlation(model, base)
    fine = slice(model.offsets[-2] if len(scales) > 1 else 0, model.offsets[-1])
    site_rng = np.random.RandomState(seeds[4])
    sites = pd.DataFrame({
        "site": [f"site{s + 1}" for s in range(n_sites)],
        "baseline_scale": site_rng.uniform(0.85, 1.2, n_sites).round(3),
        "signal_gain": site_rng.uniform(0.8, 1.1, n_sites).round(3),
        "noise_scale": site_rng.uniform(0.9, 1.3, n_sites).round(3),
    }).set_index("site", drop=False)
    site_fields = {s: _smooth_field(xyz, site_rng) for s in sites["site"]}
    anatomy = 1.0 + 0.04 * _smooth_field(xyz, np.random.RandomState(seeds[5]), n_waves=12)
    leak = motion_leak_patterns(mask, affine)
    kernel = hrf_kernel(float(t_r))
    n_burn = int(np.ceil(_BURN_S / t_r))

    subjects = []
    for i, row in participants.iterrows():
        srng = np.random.RandomState(seeds[6 + i])
        latent = apply_effects(base, effect_entries_for(effects, row, model))
        states = state_sequence(n_volumes, n_states, srng)
        states_burn = np.concatenate([np.full(n_burn, states[0]), states])
        neural = sample_latent(latent, states_burn, srng)
        lat_bold = neural_to_bold(neural, kernel, n_burn)
        tcs = {}
        for j, n in enumerate(scales):
            nodes = lat_bold @ model.node_loading[model.offsets[j]:model.offsets[j + 1]].T
            if j < len(scales) - 1:
                nodes = nodes / nodes.std(axis=0)
            tcs[n] = nodes
        occupancy = np.bincount(states, minlength=n_states) / n_volumes
        fnc = node_correlation(model, np.tensordot(occupancy, latent, axes=1))

        shift = srng.normal(scale=JITTER_MM, size=3)
        centers = layout.centers + shift + srng.normal(scale=JITTER_MM, size=layout.centers.shape)
        mirror = layout.centers * np.array([-1.0, 1.0, 1.0]) + shift \
            + srng.normal(scale=JITTER_MM, size=layout.centers.shape)
        sigmas = layout.sigmas * srng.uniform(0.95, 1.05, size=len(layout.sigmas))
        fine_maps = render_maps(mask, affine, centers, sigmas, mirror_centers=mirror)
        maps = _nested_maps(fine_maps, layout.parents, scales)
        amplitudes = SIGNAL_PCT * srng.uniform(0.8, 1.2, size=scales[-1])

        site = sites.loc[row["site"]]
        noise_level = float(NOISE_PCT * np.exp(srng.normal(0.0, 0.2)) * site["noise_scale"])
        motion_level = float(np.exp(srng.normal(-0.1, 0.35)))
        motion = simulate_motion(n_volumes, motion_level, srng)
        physio = simulate_physio(n_volumes, float(t_r), srng)
        tt = np.linspace(-1, 1, n_volumes)
        drift = DRIFT_PCT * (srng.normal() * tt + 0.5 * srng.normal() * (tt**2 - 1 / 3))
        fd = np.abs(np.diff(motion[:, :3], axis=0)).sum(1)
        spikes = np.concatenate([[0.0], np.where(fd > 0.5, SPIKE_PCT_PER_MM * fd, 0.0)])
        pct = site["signal_gain"] * (tcs[scales[-1]] * amplitudes) @ maps[scales[-1]]
        pct += (motion - motion.mean(0)) @ leak
        pct += PHYSIO_PCT * np.outer(physio, 1.0 + 0.5 * _smooth_field(xyz, srng))
        pct += (drift + spikes)[:, None]
        pct += srng.standard_normal(pct.shape) * noise_level
        baseline = 1000.0 * site["baseline_scale"] * anatomy * (1.0 + 0.05 * site_fields[row["site"]])
        bold = (baseline * (1.0 + pct / 100.0)).astype(np.float32)

        roi_mix = srng.normal(size=(9, 60))
        roi_sources = np.column_stack([physio, motion - motion.mean(0), drift, tt])
        noise_roi = roi_sources @ roi_mix + srng.standard_normal((n_volumes, 60)) * 0.7
        csf = 1500.0 * site["baseline_scale"] * (1 + 0.01 * (2.0 * physio + drift + spikes
                                                        + srng.normal(scale=0.3, size=n_volumes)))
        wm = 900.0 * site["baseline_scale"] * (1 + 0.01 * (0.5 * physio + drift + spikes
                                                      + srng.normal(scale=0.2, size=n_volumes)))
        conf, conf_meta = confounds_table(bold=bold.astype(np.float64), motion=motion, csf=csf,
                                          white_matter=wm, noise_roi=noise_roi, t_r=float(t_r))
        subjects.append(SimulatedSubject(
            participant_id=row["participant_id"], site=row["site"], bold=bold, maps=maps,
            timecourses=tcs, amplitudes=amplitudes, confounds=conf,
            confounds_metadata=conf_meta, states=states, fnc=fnc, noise_level=noise_level,
        ))
    LOGGER.info("Simulated %d participants, %d voxels, scales %s.", n_subjects, xyz.shape[0], scales)
    return SimulatedCohort(
        mask=mask, affine=affine, t_r=float(t_r), scales=scales, group_maps=group_maps,
        labels=labels, participants=participants, effects=effects, subjects=subjects,
        state_fnc=state_fnc_all[:, fine, fine], state_fnc_all=state_fnc_all, sites=sites,
        parameters={"n_subjects": n_subjects, "n_sites": n_sites, "n_volumes": n_volumes,
                    "t_r": float(t_r), "grid_mm": float(grid_mm), "scales": list(scales),
                    "n_states": n_states, "effect_size": float(effect_size),
                    "random_state": random_state if isinstance(random_state, numbers.Integral)
                    else None},
    )
