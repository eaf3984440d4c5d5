"""Classification targets: the label vector of a target and the participants it is defined for.

Diagnosis is defined for every participant with a known diagnosis. Medication and
treatment response are defined for patients only: a control has no medication
status to predict, and keeping controls would let the classifier learn
"patient vs control" instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline._validation import check_type
from pipeline.exceptions import InputDataError

__all__ = [
    "CONTROL_VALUES",
    "MISSING_VALUES",
    "PATIENT_ONLY_TARGETS",
    "Target",
    "align_features",
    "check_participants_columns",
    "derive_target",
    "drop_without_features",
]

LOGGER = logging.getLogger("msica.classify")

#: Targets that are only defined for patients (controls are dropped).
PATIENT_ONLY_TARGETS = ("medication", "response")
#: Diagnosis values (compared case-insensitively as strings) that mean "control".
CONTROL_VALUES = ("control", "hc", "tc", "cn", "typical", "healthy")
#: Cell values that mean "unknown" (compared as stripped strings, besides NaN/None).
MISSING_VALUES = ("", "n/a", "na", "nan")


@dataclass(frozen=True)
class Target:
    """A classification target restricted to the participants where it is defined.

    Attributes
    ----------
    name : str
        Column of the participants table.
    y : pandas.Series of shape (n_defined,)
        Labels (strings), indexed by participant_id.
    classes : tuple of str
        Sorted class labels.
    n_dropped : int
        Participants left out (missing value, or controls for patient-only targets).
    """

    name: str
    y: pd.Series
    classes: tuple
    n_dropped: int

    @property
    def is_binary(self) -> bool:
        """True when the target has exactly two classes."""
        return len(self.classes) == 2

    @property
    def participant_ids(self) -> pd.Index:
        """Participants where the target is defined, in table order."""
        return self.y.index


def _is_missing(values: pd.Series, missing_values) -> np.ndarray:
    as_str = values.astype("string").str.strip().str.lower()
    return np.asarray(values.isna() | as_str.isin([str(m).lower() for m in missing_values]), bool)


def _index_by_participant(participants: pd.DataFrame) -> pd.DataFrame:
    if "participant_id" in participants.columns:
        participants = participants.set_index("participant_id")
    if participants.index.has_duplicates:
        dup = participants.index[participants.index.duplicated()].unique().tolist()[:5]
        raise InputDataError(
            f"'participants' must have one row per participant_id; duplicated: {dup}. "
            "Remove the duplicated rows."
        )
    return participants


def derive_target(
    participants: pd.DataFrame,
    target: str,
    *,
    patients_only: bool | None = None,
    diagnosis_column: str = "diagnosis",
    control_values=CONTROL_VALUES,
    missing_values=MISSING_VALUES,
) -> Target:
    """Labels of ``target`` on the participants where it is defined.

    Parameters
    ----------
    participants : pandas.DataFrame
        One row per participant: a ``participant_id`` column or index, and the
        ``target`` column (plus ``diagnosis`` for patient-only targets).
    target : str
        Column to predict, e.g. ``"diagnosis"``, ``"medication"``, ``"response"``.
        Two classes give a binary task, more a multi-class task.
    patients_only : bool or None, default=None
        Keep only patients (diagnosis not in ``control_values``). ``None`` means
        True for targets in :data:`PATIENT_ONLY_TARGETS`, else False.
    diagnosis_column : str, default="diagnosis"
        Column that tells patients from controls.
    control_values : sequence of str
        Diagnosis values (case-insensitive) that mark a control.
    missing_values : sequence of str
        Values (besides NaN) that mean "unknown"; these participants are dropped.

    Returns
    -------
    Target

    Raises
    ------
    ValueError
        If ``target`` or ``diagnosis_column`` is not a column.
    InputDataError
        If fewer than two classes remain, or a class has fewer than 2 members.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3", "sub-4", "sub-5"],
    ...                   "diagnosis": ["patient", "control", "patient", "patient", "patient"],
    ...                   "medication": ["yes", "n/a", "no", "yes", "no"]})
    >>> derive_target(p, "medication").y.tolist()
    ['yes', 'no', 'yes', 'no']
    """
    check_type("target", target, str)
    table = _index_by_participant(participants)
    if target not in table.columns:
        raise ValueError(
            f"'target' must be a column of the participants table {list(table.columns)}. "
            f"Got {target!r}."
        )
    if patients_only is None:
        patients_only = target in PATIENT_ONLY_TARGETS
    keep = ~_is_missing(table[target], missing_values)
    if patients_only:
        if diagnosis_column not in table.columns:
            raise ValueError(
                f"target {target!r} is defined for patients only, which needs the "
                f"'{diagnosis_column}' column; columns are {list(table.columns)}. "
                "Add it or pass patients_only=False."
            )
        dx = table[diagnosis_column].astype("string").str.strip().str.lower()
        is_control = np.asarray(dx.isin([c.lower() for c in control_values]), bool)
        keep &= ~is_control & ~_is_missing(table[diagnosis_column], missing_values)
    y = table.loc[keep, target]
    y = y.map(_label_to_str).astype(object)
    counts = y.value_counts()
    if len(counts) < 2 or counts.min() < 2:
        raise InputDataError(
            f"target {target!r} needs at least two classes with 2+ participants each "
            f"(patients_only={patients_only}). Got class counts {counts.to_dict()}. "
            "Check the participants table or choose another target."
        )
    n_dropped = int((~keep).sum())
    LOGGER.info("target %r: %d participants, %d dropped, classes %s",
                target, len(y), n_dropped, counts.to_dict())
    return Target(name=target, y=y, classes=tuple(sorted(counts.index)), n_dropped=n_dropped)


def _label_to_str(value) -> str:
    """Labels as strings; 1.0 and 1 both become '1' (tables read as float)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def align_features(features: pd.DataFrame, target: Target) -> pd.DataFrame:
    """Rows of ``features`` for the participants of ``target``, in the target's order.

    Parameters
    ----------
    features : pandas.DataFrame of shape (n_participants, n_features)
        Feature table indexed by participant_id.
    target : Target

    Returns
    -------
    pandas.DataFrame of shape (n_defined, n_features)

    Raises
    ------
    InputDataError
        If participants of the target have no feature row.
    """
    missing = target.participant_ids.difference(features.index)
    if len(missing):
        raise InputDataError(
            f"{len(missing)} participants of target {target.name!r} have no feature row "
            f"(first: {missing[:5].tolist()}). Compute their features or drop them from "
            "the participants table."
        )
    return features.loc[target.participant_ids]


def drop_without_features(target: Target, features: pd.DataFrame,
                          *, min_per_class: int = 2) -> tuple[Target, pd.DataFrame, list[str]]:
    """Leave out (and report) the target's participants that have no feature row.

    Parameters
    ----------
    target : Target
    features : pandas.DataFrame
        Feature table indexed by participant_id.
    min_per_class : int, default=2
        Fewest participants per class that must remain.

    Returns
    -------
    target : Target
        Restricted to participants with features.
    features : pandas.DataFrame
        Their rows, in the target's order.
    dropped : list of str
        Participants left out (logged as a warning with their count).

    Raises
    ------
    InputDataError
        If fewer than two classes with ``min_per_class`` participants remain.
    """
    missing = target.participant_ids.difference(features.index, sort=False)
    if len(missing):
        LOGGER.warning("target %r: %d participant(s) of participants.tsv have no features and "
                       "are left out: %s", target.name, len(missing), ", ".join(missing))
    y = target.y.drop(missing)
    counts = y.value_counts()
    if len(counts) < 2 or counts.min() < min_per_class:
        raise InputDataError(
            f"target {target.name!r}: only {counts.to_dict()} participants per class have "
            f"features ({len(missing)} without features left out, e.g. {list(missing[:5])}); "
            f"every class needs at least {min_per_class}. Run the participant level for "
            "them or choose another target."
        )
    kept = Target(name=target.name, y=y, classes=tuple(sorted(counts.index)),
                  n_dropped=target.n_dropped + len(missing))
    return kept, features.loc[y.index], list(map(str, missing))


def check_participants_columns(table: pd.DataFrame, *, targets=(), site_column=None,
                               covariates=(), source: str = "participants.tsv") -> None:
    """Check, before any group work, that every column the classifiers need exists.

    Parameters
    ----------
    table : pandas.DataFrame
        The participants table (``participant_id`` column or index).
    targets : sequence of str
        ``--targets`` columns.
    site_column : str or None
        ``--site-column`` when given explicitly (None: not required).
    covariates : sequence of str
        Covariates to protect in harmonization (required).
    source : str
        How to name the table in the message (its path).

    Raises
    ------
    InputDataError
        One line naming the table, the missing columns and the fix.
    """
    columns = set(table.columns) | {table.index.name}
    needed = [("--targets", c) for c in targets] + [("--site-column", site_column)] * bool(
        site_column) + [("--harmonize-protect", c) for c in covariates]
    missing = [f"{option} {column}" for option, column in needed if column not in columns]
    if missing:
        raise InputDataError(
            f"{source} has no column for {', '.join(missing)} (its columns: "
            f"{', '.join(map(str, table.columns))}); add the column(s) or change the option(s)."
        )
