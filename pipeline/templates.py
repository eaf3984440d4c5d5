"""Labels of a network template: msica or NeuroMark TSV tables, or GIFT's domain files.

A template is a 4-D NIfTI with one volume per network. Its labels say what each
volume is called, which functional domain it belongs to, and whether it enters
FNC. Three formats are read:

* a TSV (``.tsv``) with one row per volume, in volume order, and a ``label``
  column (msica's template tables, NeuroMark's ``component_index, label,
  domain, ...`` tables); a ``domain`` (or ``domain_name``) column gives domains;
  every network enters FNC;
* GIFT's ``comp_network_names`` text files (any other extension, e.g.
  ``Neuromark_fMRI_1.0.txt``): one line per domain, ``NAME, i, j, ...`` with
  1-based volume indices, or lines of bare indices (NeuroMark 3.0). Networks not
  listed stay out of FNC, as in GIFT;
* none: networks ``N1 ... Nk``, no domains, all in FNC.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pipeline.exceptions import InputDataError

__all__ = ["LABEL_COLUMNS", "read_template_labels"]

#: Columns of the table :func:`read_template_labels` returns.
LABEL_COLUMNS = ("index", "label", "domain", "in_fnc")


def read_template_labels(path: str | os.PathLike | None, n_networks: int) -> pd.DataFrame:
    """One row per template network: its 1-based ``index``, ``label``, ``domain``, ``in_fnc``.

    Parameters
    ----------
    path : path-like or None
        Labels file (see the module docstring for the formats), or None.
    n_networks : int
        Number of volumes of the template.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LABEL_COLUMNS`; ``label`` falls back to ``N<index>``
        where the file gives none; ``domain`` is ``""`` where unknown.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InputDataError
        If a TSV does not have one row per network, or a GIFT file names an
        index outside ``1..n_networks``, twice, or no index at all.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> gift = pathlib.Path(tempfile.mkdtemp()) / "domains.txt"
    >>> _ = gift.write_text("SC, 1, 2\\nVI, 4\\n")
    >>> read_template_labels(gift, 4).to_dict("list")
    {'index': [1, 2, 3, 4], 'label': ['N1', 'N2', 'N3', 'N4'], 'domain': ['SC', 'SC', '', 'VI'], 'in_fnc': [True, True, False, True]}
    """
    table = pd.DataFrame({"index": range(1, n_networks + 1),
                          "label": [f"N{i}" for i in range(1, n_networks + 1)],
                          "domain": [""] * n_networks, "in_fnc": [True] * n_networks})
    if path is None:
        return table
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Template labels {path} do not exist; check --template-labels.")
    if path.name.lower().endswith(".tsv"):
        return _from_tsv(path, table)
    return _from_gift_domains(path, table)


def _from_tsv(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    given = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if len(given) != len(table):
        raise InputDataError(
            f"{path} has {len(given)} rows but the template has {len(table)} networks; give one "
            "row per template volume, in volume order (or GIFT's domain file: 'DOMAIN, 1, 2')."
        )
    missing = {"", "n/a", "NA", "nan"}
    if "label" in given:
        labels = given["label"].str.strip()
        table["label"] = [lab if lab not in missing else default
                          for lab, default in zip(labels, table["label"], strict=True)]
    column = next((c for c in ("domain", "domain_name") if c in given), None)
    if column is not None:
        table["domain"] = [d if d not in missing else "" for d in given[column].str.strip()]
    return table


def _from_gift_domains(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    n_networks = len(table)
    seen: dict[int, int] = {}
    table["in_fnc"] = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = [f.strip() for f in line.replace("\t", ",").split(",") if f.strip()]
        if not fields:
            continue
        domain = "" if fields[0].isdigit() else fields[0]
        values = fields if not domain else fields[1:]
        for value in values:
            if not value.isdigit() or not 1 <= int(value) <= n_networks:
                raise InputDataError(
                    f"{path} line {number}: {value!r} is not a network index in 1..{n_networks} "
                    "(GIFT's format is 'DOMAIN, 1, 2, 3' with 1-based template volumes); fix "
                    "the line or pass the labels file of this template."
                )
            index = int(value)
            if index in seen:
                raise InputDataError(
                    f"{path} lists network {index} on lines {seen[index]} and {number}; "
                    "list each network once."
                )
            seen[index] = number
            table.loc[index - 1, ["domain", "in_fnc"]] = [domain, True]
    if not seen:
        raise InputDataError(
            f"{path} lists no network; GIFT's domain files have lines 'DOMAIN, 1, 2, 3'."
        )
    return table
