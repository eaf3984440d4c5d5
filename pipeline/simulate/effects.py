"""Planted group effects of the simulator: which network pairs change, and by how much."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd

from pipeline.simulate.connectivity import HierarchyModel, apply_effects, node_correlation

__all__ = ["EFFECT_DESIGN", "describe_effects", "design_effects", "effect_entries_for"]

LOGGER = logging.getLogger("msica.pipeline")

#: (target, level, reference, kind, latent change) of each planted effect at
#: ``effect_size=1``. Kinds: ``coarse`` (two networks of the coarsest scale),
#: ``fine`` (two finest networks with different parents), ``cross`` (a coarsest
#: network and a finest network that is not its descendant).
EFFECT_DESIGN = (
    ("diagnosis", "patient", "control", "coarse", 0.45),
    ("diagnosis", "patient", "control", "fine", 0.75),
    ("diagnosis", "patient", "control", "cross", 0.55),
    ("medication", "medA", "medB", "cross", 0.75),
    ("response", "responder", "non-responder", "coarse", 0.60),
)
_MIN_EIGENVALUE = 0.05


def _candidate_pairs(model: HierarchyModel, kind: str) -> list[tuple[int, int]]:
    off, scales = model.offsets, model.scales
    coarse = range(off[0], off[1])
    if len(scales) == 1 or kind == "coarse":
        return list(itertools.combinations(coarse, 2))
    fine_anc = model.ancestors[0]
    fine = range(off[-2], off[-1])
    if kind == "fine":
        return [(a, b) for a, b in itertools.combinations(fine, 2)
                if fine_anc[a - off[-2]] != fine_anc[b - off[-2]]]
    return [(a, b) for a in coarse for b in fine if fine_anc[b - off[-2]] != a - off[0]]



def _combos(effects: pd.DataFrame) -> list[dict]:
    """Every combination of levels a participant can have (controls have none)."""
    patient = {"diagnosis": "patient"}
    out = [{"diagnosis": "control"}]
    for med, resp in itertools.product(("medA", "medB"), ("responder", "non-responder")):
        out.append({**patient, "medication": med, "response": resp})
    return out


def effect_entries_for(effects: pd.DataFrame, row, model: HierarchyModel) -> list[tuple[int, int, float]]:
    """Latent changes that apply to one participant (a row of ``participants``)."""
    out = []
    for eff in effects.itertuples(index=False):
        if row.get(eff.target) == eff.level:
            out.append((int(eff.node_a), int(eff.node_b), float(eff.delta_latent)))
    return out


def _draw_pairs(model: HierarchyModel, effect_size: float,
                rng: np.random.RandomState) -> pd.DataFrame:
    used: set[int] = set()
    rows = []
    for target, level, reference, kind, size in EFFECT_DESIGN:
        pairs = _candidate_pairs(model, kind)
        taken = {(r["node_a"], r["node_b"]) for r in rows}
        fresh = [p for p in pairs if not (set(p) & used)]
        pool = fresh or [p for p in pairs if p not in taken] or pairs
        a, b = pool[rng.randint(len(pool))]
        used |= {a, b}
        sign = 1.0 if rng.rand() < 0.5 else -1.0
        rows.append({"target": target, "level": level, "reference": reference,
                     "node_a": a, "node_b": b, "delta_latent": sign * size * effect_size})
    return pd.DataFrame(rows)


def _all_definite(model: HierarchyModel, base: np.ndarray, effects: pd.DataFrame) -> bool:
    for combo in _combos(effects):
        lat = apply_effects(base, effect_entries_for(effects, combo, model))
        if np.linalg.eigvalsh(lat).min() < _MIN_EIGENVALUE:
            return False
    return True


def design_effects(model: HierarchyModel, base: np.ndarray, effect_size: float,
                   rng: np.random.RandomState) -> tuple[pd.DataFrame, np.ndarray]:
    """Choose the network pairs of the planted effects and their size.

    Pairs are drawn without reusing a node where possible, and redrawn until the
    latent correlation matrix of every group is positive definite; after every 20
    failed draws the couplings of ``base`` are shrunk toward zero (logged).

    Parameters
    ----------
    model : HierarchyModel
    base : ndarray of shape (n_latent, n_latent)
        Latent correlation shared by all participants, before effects.
    effect_size : float
    rng : numpy.random.RandomState

    Returns
    -------
    effects : DataFrame
        ``target, level, reference, node_a, node_b, delta_latent`` (latent/node indices).
    base : ndarray of shape (n_latent, n_latent)
        ``base``, possibly shrunk.
    """
    for attempt in range(200):
        effects = _draw_pairs(model, effect_size, rng)
        if _all_definite(model, base[None], effects):
            return effects, base
        if attempt % 20 == 19:
            eye = np.eye(base.shape[1])
            base = eye + 0.85 * (base - eye)
            LOGGER.debug("Shrinking latent couplings to keep group correlations positive definite.")
    raise ValueError(
        f"'effect_size' is too large: planted effects make a latent correlation matrix "
        f"indefinite. Got effect_size={effect_size}. Use effect_size <= 1.0."
    )


def describe_effects(model: HierarchyModel, states: np.ndarray, effects: pd.DataFrame,
                     labels: pd.DataFrame) -> pd.DataFrame:
    """Add the expected node-level change and the labels to the effects table.

    Parameters
    ----------
    model : HierarchyModel
    states : ndarray of shape (n_states, n_latent, n_latent)
        Latent correlation of each state (reference groups).
    effects : DataFrame
        From :func:`design_effects`.
    labels : DataFrame
        Node labels (``scale``, ``label``), coarse scale first.

    Returns
    -------
    DataFrame
        One row per effect (see :class:`SimulatedCohort`); ``delta`` is the
        change of the node correlation, states averaged.
    """
    effects = effects.copy()
    mean_base = states.mean(axis=0)
    ref = node_correlation(model, mean_base)
    deltas = []
    for eff in effects.itertuples(index=False):
        lat = apply_effects(mean_base[None], [(eff.node_a, eff.node_b, eff.delta_latent)])[0]
        deltas.append(node_correlation(model, lat)[eff.node_a, eff.node_b] - ref[eff.node_a, eff.node_b])
    effects["delta"] = np.round(deltas, 4)
    effects["direction"] = np.where(effects["delta"] >= 0, "increase", "decrease")
    lab = labels.reset_index(drop=True)
    effects["scale_a"] = [int(lab.loc[n, "scale"]) for n in effects["node_a"]]
    effects["label_a"] = [lab.loc[n, "label"] for n in effects["node_a"]]
    effects["scale_b"] = [int(lab.loc[n, "scale"]) for n in effects["node_b"]]
    effects["label_b"] = [lab.loc[n, "label"] for n in effects["node_b"]]
    cols = ["target", "level", "reference", "scale_a", "label_a", "scale_b", "label_b",
            "delta", "direction", "delta_latent", "node_a", "node_b"]
    return effects[cols]
