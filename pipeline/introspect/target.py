"""The group level's introspection run: msica's MLP trained on one target of the FNC table.

:func:`introspect_target` is the whole set-up in one call: the edge columns of
the feature table, the participants where the target is defined, their
z-scored features, the groups of the per-group spectra, the two sub-seeds
(initial weights, batch order), the :class:`~pipeline.introspect.models.FNCMLP`
and :func:`~pipeline.introspect.training.train_with_introspection`; it returns
the result with the sidecar's description of what was done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline._docs import fill_doc
from pipeline._validation import derive_seeds
from pipeline.classify.targets import align_features, derive_target
from pipeline.fnc.names import EDGE_SEP, is_edge
from pipeline.introspect.models import FNCMLP
from pipeline.introspect.training import IntrospectionResult, train_with_introspection

__all__ = ["TargetIntrospection", "introspect_target", "participant_groups",
           "standardize_features"]

LOGGER = logging.getLogger("msica.introspect")

#: Group given to participants without a value in the group column.
MISSING_GROUP = "n/a"


@dataclass
class TargetIntrospection:
    """What :func:`introspect_target` returns.

    Attributes
    ----------
    result : IntrospectionResult
        The training run (history, spectra, summary, device).
    metadata : dict
        JSON-ready description of the run for the sidecar: target, classes,
        participants, features, groups, device, architecture, optimisation,
        final training loss and accuracy, seed, preprocessing.
    """

    result: IntrospectionResult
    metadata: dict


def standardize_features(features: pd.DataFrame) -> np.ndarray:
    """Z-score each column (population standard deviation); constant columns are centred only.

    Parameters
    ----------
    features : pandas.DataFrame of shape (n_participants, n_features)

    Returns
    -------
    ndarray of shape (n_participants, n_features)
        float64.

    Examples
    --------
    >>> import pandas as pd
    >>> standardize_features(pd.DataFrame({"a": [1.0, 3.0], "b": [5.0, 5.0]})).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """
    X = features.to_numpy(dtype=np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    constant = ~(std > 0)
    if constant.any():
        LOGGER.info("introspect: %d constant feature column(s) centred but not scaled: %s",
                    int(constant.sum()), list(features.columns[constant])[:5])
    return (X - mean) / np.where(constant, 1.0, std)


def participant_groups(participants: pd.DataFrame, participant_ids: Sequence[str],
                       column: str) -> np.ndarray:
    """The group of each participant (strings), ``"n/a"`` where the column has no value.

    Parameters
    ----------
    participants : pandas.DataFrame
        participants.tsv (``participant_id`` column or index).
    participant_ids : sequence of str
        Participants, in the order wanted.
    column : str
        Column of the groups (e.g. ``"diagnosis"``, ``"site"``).

    Returns
    -------
    ndarray of shape (n_participants,)

    Raises
    ------
    ValueError
        If ``column`` is not a column of ``participants``.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"participant_id": ["sub-1", "sub-2"], "site": ["a", None]})
    >>> participant_groups(p, ["sub-2", "sub-1"], "site").tolist()
    ['n/a', 'a']
    """
    indexed = (participants.set_index("participant_id")
               if "participant_id" in participants.columns else participants)
    if column not in indexed.columns:
        raise ValueError(
            f"'group_column' must be a column of the participants table "
            f"{list(indexed.columns)}. Got {column!r}."
        )
    groups = indexed.loc[list(participant_ids), column]
    n_missing = int(groups.isna().sum())
    if n_missing:
        LOGGER.warning("introspect: %d participant(s) without %r are grouped as %r.",
                       n_missing, column, MISSING_GROUP)
    return groups.astype(object).where(groups.notna(), MISSING_GROUP).astype(str).to_numpy()


@fill_doc
def introspect_target(
    features: pd.DataFrame,
    participants: pd.DataFrame,
    target: str,
    *,
    group_column: str = "diagnosis",
    hidden: Sequence[int] = (64,),
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 1e-3,
    record_every: int = 1,
    device: Any = "auto",
    random_state: int = 0,
) -> TargetIntrospection:
    """Train :class:`~pipeline.introspect.models.FNCMLP` on one target with spectra recorded.

    The edge columns (:func:`pipeline.fnc.names.is_edge`) of ``features`` are z-scored
    over the participants where the target is defined (medication and
    response: patients only, see :func:`pipeline.classify.targets.derive_target`)
    and fed to :func:`~pipeline.introspect.training.train_with_introspection`,
    with ``group_column`` of the participants table as the groups of the
    per-group spectra. Training is on everyone (no held-out data): the spectra
    describe the optimisation, not generalisation.

    Parameters
    ----------
    features : pandas.DataFrame
        FNC feature table indexed by participant_id; columns that are not
        edges (covariates) are ignored.
    participants : pandas.DataFrame
        participants.tsv (``participant_id`` column or index).
    target : str
        Column to classify.
    group_column : str, default="diagnosis"
        Column of the per-group spectra (missing values form the group ``"n/a"``).
    hidden : sequence of int, default=(64,)
        Hidden layer widths (ReLU).
    epochs, batch_size, lr, record_every
        See :func:`~pipeline.introspect.training.train_with_introspection`
        (Adam, batch-mean cross-entropy).
    %(device)s
    random_state : int, default=0
        Master seed: two sub-seeds are drawn from it, for the initial weights
        and for the batch order.

    Returns
    -------
    TargetIntrospection

    Raises
    ------
    ValueError
        If ``features`` has no edge column, or ``target`` or ``group_column`` is
        not a column of ``participants``.
    InputDataError
        If the target has fewer than two classes of two participants, or some
        of its participants have no feature row.
    """
    edges = [c for c in features.columns if is_edge(c)]
    if not edges:
        raise ValueError(
            f"'features' must have edge columns (names containing {EDGE_SEP!r}); got "
            f"{list(features.columns)[:5]}. Pass the FNC feature table."
        )
    labels = derive_target(participants, target)
    X = standardize_features(align_features(features[edges], labels))
    groups = participant_groups(participants, labels.participant_ids, group_column)
    model_seed, train_seed = (int(s) for s in derive_seeds(random_state, 2))
    hidden = [int(h) for h in hidden]
    model = FNCMLP(X.shape[1], n_classes=len(labels.classes), hidden=tuple(hidden),
                   activation="relu", random_state=model_seed)
    result = train_with_introspection(
        model, X, labels.y.to_numpy(), groups, epochs=epochs, batch_size=batch_size, lr=lr,
        record_every=record_every, device=device, random_state=train_seed)
    last = result.history.iloc[-1]
    metadata = {
        "Target": target,
        "Classes": [str(c) for c in result.classes],
        "NumberOfParticipants": int(X.shape[0]),
        "NumberOfFeatures": int(X.shape[1]),
        "GroupColumn": group_column,
        "Groups": sorted(set(groups.tolist())),
        "Device": result.device,
        "Epochs": epochs,
        "BatchSize": batch_size,
        "RecordEvery": record_every,
        "Architecture": {"Model": "FNCMLP", "InputFeatures": int(X.shape[1]),
                         "Hidden": hidden, "Activation": "relu",
                         "Outputs": len(labels.classes)},
        "Optimizer": "adam",
        "LearningRate": lr,
        "Loss": "cross-entropy (batch mean)",
        "FinalTrainingLoss": float(last["loss"]),
        "FinalTrainingAccuracy": float(last["accuracy"]),
        "RandomSeed": random_state,
        "Preprocessing": "edge columns z-scored over the trained participants",
    }
    return TargetIntrospection(result=result, metadata=metadata)
