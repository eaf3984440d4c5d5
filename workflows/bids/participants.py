"""The one reader of ``participants.tsv``.

One dtype policy for every use of the table: each cell is the string the user
wrote (identifiers such as ``participant_id``, categories such as ``site``,
``sex`` or ``diagnosis``, and the covariates copied into msica's feature and QC
tables, which therefore show the values exactly as written); ``n/a`` (BIDS) is
the only missing value. Columns the caller names in ``numeric`` (the
classifier's confounds and protected covariates, whose numbers enter a design
matrix) are parsed as numbers when every value in them is one, and otherwise
stay strings (a categorical covariate such as ``sex``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from pipeline.exceptions import InputDataError

__all__ = ["read_participants"]

#: The only cell value that means "missing" (BIDS).
MISSING = "n/a"


def _read(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", na_values=MISSING, keep_default_na=False, **kwargs)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputDataError(
            f"{path} is not a readable tab-separated table ({exc}); fix participants.tsv."
        ) from exc


def read_participants(path: str | os.PathLike, *, numeric: Iterable[str] = ()) -> pd.DataFrame:
    """Read ``participants.tsv``: values as written (strings), ``n/a`` missing.

    Parameters
    ----------
    path : path-like
        The table.
    numeric : iterable of str, optional
        Columns parsed as numbers when every value in them is a number (as
        :func:`pandas.read_csv` infers them); they stay strings otherwise.
        Names that are not columns are ignored.

    Returns
    -------
    pandas.DataFrame
        One row per participant, in file order, with a ``participant_id`` column.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InputDataError
        If the table is unreadable, has no ``participant_id`` column, or lists a
        participant twice.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> tsv = pathlib.Path(tempfile.mkdtemp()) / "participants.tsv"
    >>> _ = tsv.write_text("participant_id\\tsite\\tage\\tsex\\n"
    ...                    "sub-01\\t01\\t34\\tF\\nsub-02\\t02\\tn/a\\tM\\n")
    >>> table = read_participants(tsv, numeric=["age", "sex"])
    >>> table["site"].tolist(), table["age"].tolist(), table["sex"].tolist()
    (['01', '02'], [34.0, nan], ['F', 'M'])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; add participants.tsv to the dataset.")
    columns = list(_read(path, nrows=0).columns)
    if "participant_id" not in columns:
        raise InputDataError(
            f"{path} has no participant_id column (its columns: {', '.join(columns)}); "
            "name the first column participant_id (BIDS)."
        )
    parsed = set(numeric)
    table = _read(path, dtype={c: str for c in columns if c not in parsed})
    duplicated = table["participant_id"][table["participant_id"].duplicated()].unique()
    if duplicated.size:
        raise InputDataError(
            f"{path} lists {', '.join(map(str, duplicated[:5]))} more than once; keep one row "
            "per participant."
        )
    return table
