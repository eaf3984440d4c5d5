"""The input dataset: the pybids layout, participant and run selection, filter files, TRs.

Queries are data (``bids_templates/io_spec.yaml``, XCP-D style); a
``--bids-filter-file`` is merged on top of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from bids import BIDSLayout
from bids.layout import BIDSLayoutIndexer, Query

from bids_templates import template_path
from pipeline.exceptions import InputDataError

__all__ = [
    "build_layout",
    "collect_participants",
    "collect_runs",
    "companion_entities",
    "get_repetition_time",
    "load_bids_filter_file",
]

LOGGER = logging.getLogger("msica.workflows")


#: Paths pybids need not index (regular expressions are matched against the
#: path relative to the dataset root).
LAYOUT_IGNORE = (
    "code",
    "stimuli",
    "sourcedata",
    "models",
    "logs",
    "figures",
    "log",
    "work",
    "derivatives",
    # non-functional data msica never reads
    re.compile(r"/(dwi|fmap|perf|pet|meg|eeg|ieeg|beh|micr|nirs|motion)/"),
    re.compile(r"\.(html|svg|gii|h5|txt|csv)$"),
)


@lru_cache(maxsize=1)
def _io_spec() -> dict:
    return yaml.safe_load(template_path("io_spec.yaml").read_text())


def companion_entities(*, same_grid: bool) -> list[str]:
    """Entities a run's companion file (mask, confounds table) shares with its BOLD.

    ``match_entities`` of ``bids_templates/io_spec.yaml``: the run's entities, and
    with ``same_grid`` (images) also its grid's.

    Examples
    --------
    >>> companion_entities(same_grid=True)[-2:]
    ['space', 'res']
    """
    match = _io_spec()["match_entities"]
    return match["all"] + (match["images"] if same_grid else [])


def build_layout(
    bids_dir: str | os.PathLike,
    *,
    derivatives: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    work_dir: str | os.PathLike,
    validate: bool = False,
    database_dir: str | os.PathLike | None = None,
    reset_database: bool = False,
) -> BIDSLayout:
    """Index ``bids_dir`` (and its fMRIPrep derivatives) with pybids.

    Parameters
    ----------
    bids_dir : path-like
        Root of the BIDS dataset (raw, or an fMRIPrep derivative dataset given
        as the root).
    derivatives : path-like or list of path-like, optional
        fMRIPrep output folders. Default: ``bids_dir/derivatives/fmriprep``
        when it exists, otherwise none.
    work_dir : path-like
        Work directory; the layout database is cached under
        ``work_dir/bids_db/<hash of the inputs>``.
    validate : bool, default=False
        Run the BIDS validator rules of pybids while indexing.
    database_dir : path-like, optional
        Use this folder for the database instead (pass a job-unique folder when
        several jobs index at once: SQLite databases must not be shared).
    reset_database : bool, default=False
        Re-index even when a cached database exists.

    Returns
    -------
    bids.BIDSLayout

    Raises
    ------
    FileNotFoundError
        If ``bids_dir`` or a derivatives folder does not exist.
    InputDataError
        If ``bids_dir`` has no dataset_description.json.
    """
    bids_dir = Path(bids_dir).absolute()
    if not bids_dir.is_dir():
        raise FileNotFoundError(
            f"BIDS_DIR {bids_dir} does not exist; pass the path of a BIDS dataset."
        )
    if not (bids_dir / "dataset_description.json").is_file():
        raise InputDataError(
            f"{bids_dir} is not a BIDS dataset (no dataset_description.json); "
            "point BIDS_DIR at the dataset root."
        )
    if derivatives is None:
        default = bids_dir / "derivatives" / "fmriprep"
        deriv_list = [default] if default.is_dir() else []
    elif isinstance(derivatives, (str, os.PathLike)):
        deriv_list = [Path(derivatives).absolute()]
    else:
        deriv_list = [Path(d).absolute() for d in derivatives]
    for deriv in deriv_list:
        if not deriv.is_dir():
            raise FileNotFoundError(
                f"Derivatives folder {deriv} does not exist; pass the fMRIPrep output "
                "folder with --derivatives."
            )
        if not (deriv / "dataset_description.json").is_file():
            raise InputDataError(
                f"{deriv} is not a BIDS derivatives dataset (no dataset_description.json); "
                "pass the fMRIPrep output folder itself with --derivatives."
            )
    if database_dir is None:
        key = json.dumps([str(bids_dir), [str(d) for d in deriv_list], bool(validate)])
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        database_dir = Path(work_dir) / "bids_db" / digest
    database_dir = Path(database_dir)
    database_dir.mkdir(parents=True, exist_ok=True)
    indexer = BIDSLayoutIndexer(validate=validate, ignore=list(LAYOUT_IGNORE))
    LOGGER.info("Indexing %s (derivatives: %s); database %s", bids_dir, deriv_list, database_dir)
    return BIDSLayout(
        str(bids_dir),
        validate=validate,
        derivatives=[str(d) for d in deriv_list] or False,
        indexer=indexer,
        database_path=str(database_dir),
        reset_database=reset_database,
    )


def collect_participants(
    layout: BIDSLayout, participant_label: str | Sequence[str] | None = None
) -> list[str]:
    """Return the participant labels to process (without ``sub-``), sorted.

    Parameters
    ----------
    layout : bids.BIDSLayout
    participant_label : str or list of str, optional
        Labels with or without ``sub-``. Default: all participants.

    Returns
    -------
    list of str

    Raises
    ------
    FileNotFoundError
        If a requested label is not in the dataset, or the dataset has none.
    """
    available = sorted(layout.get_subjects())
    if not available:
        raise FileNotFoundError(
            f"No participants (sub-*/ folders) found in BIDS_DIR {layout.root}."
        )
    if participant_label is None:
        return available
    if isinstance(participant_label, str):
        participant_label = [participant_label]
    requested = sorted({label.removeprefix("sub-") for label in participant_label})
    missing = [label for label in requested if label not in available]
    if missing:
        raise FileNotFoundError(
            f"Participant label(s) {', '.join(missing)} not found in BIDS_DIR; "
            f"available: {', '.join(available)}."
        )
    return requested


def load_bids_filter_file(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read a ``--bids-filter-file`` (JSON) into a dict of queries.

    Keys are query names from io_spec.yaml (``bold``, ``mask``, ``confounds``,
    ``raw_bold``); values are entity filters. ``"Query.NONE"`` / ``"Query.ANY"``
    become :class:`bids.layout.Query` members.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not valid JSON, not an object of objects, or uses unknown keys.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "f.json"
    >>> _ = p.write_text(json.dumps({"bold": {"space": "T1w", "echo": "Query.NONE"}}))
    >>> load_bids_filter_file(p)
    {'bold': {'space': 'T1w', 'echo': <Query.NONE: 1>}}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--bids-filter-file {path} does not exist.")
    try:
        filters = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"--bids-filter-file {path} is not valid JSON (line {exc.lineno}, column "
            f"{exc.colno}: {exc.msg}); fix it, e.g. {{\"bold\": {{\"session\": \"01\"}}}}."
        ) from exc
    return _check_filters(filters, source=str(path))


def _check_filters(filters: Any, *, source: str = "bids_filters") -> dict[str, dict[str, Any]]:
    allowed = sorted(_io_spec()["queries"])
    if not isinstance(filters, Mapping) or not all(
        isinstance(v, Mapping) for v in filters.values()
    ):
        raise ValueError(
            f"{source} must be a JSON object mapping query names {allowed} to entity "
            f"filters, e.g. {{\"bold\": {{\"session\": \"01\"}}}}. Got {filters!r}."
        )
    unknown = sorted(set(filters) - set(allowed))
    if unknown:
        raise ValueError(
            f"{source} has unknown query name(s) {unknown}; allowed: {allowed}."
        )
    out: dict[str, dict[str, Any]] = {}
    for name, query in filters.items():
        out[name] = {}
        for entity, value in query.items():
            if isinstance(value, str) and value.startswith("Query."):
                try:
                    value = Query[value.removeprefix("Query.")]
                except KeyError as exc:
                    raise ValueError(
                        f"{source}: {name}.{entity}={value!r} is not a pybids Query; "
                        "use 'Query.NONE', 'Query.ANY' or 'Query.OPTIONAL'."
                    ) from exc
            out[name][entity] = value
    return out


def get_repetition_time(
    layout: BIDSLayout,
    bold_file: str | os.PathLike,
    *,
    raw_file: str | os.PathLike | None = None,
) -> float:
    """Repetition time of ``bold_file`` in seconds: sidecar, raw sidecar, then header.

    Metadata follow the BIDS inheritance principle (a top-level
    ``task-<l>_bold.json`` applies to every run). When the sidecar of
    ``bold_file`` has no ``RepetitionTime``, that of ``raw_file`` (the raw BOLD
    it was preprocessed from) is used, then the NIfTI header (pixdim[4]). A
    header TR that disagrees with the sidecar's is reported as a warning naming
    both; the sidecar wins, as BIDS says.

    Raises
    ------
    InputDataError
        If neither the sidecar nor a readable header gives a positive TR.
    """
    header_tr = _header_repetition_time(bold_file)
    for path in (bold_file, raw_file):
        if path is None:
            continue
        t_r = layout.get_metadata(str(path)).get("RepetitionTime")
        if t_r is not None and float(t_r) > 0:
            if isinstance(header_tr, float) and not math.isclose(header_tr, float(t_r),
                                                                  rel_tol=1e-3):
                LOGGER.warning(
                    "%s: the NIfTI header says TR %g s but the JSON sidecar says %g s; using "
                    "the sidecar's %g s (BIDS). Fix the header or the sidecar if that is wrong.",
                    Path(bold_file).name, header_tr, float(t_r), float(t_r))
            return float(t_r)
    if isinstance(header_tr, Exception):
        raise InputDataError(
            f"{bold_file} has no RepetitionTime in its JSON sidecar and its NIfTI header "
            f"cannot be read ({header_tr}); add RepetitionTime (seconds) to its sidecar."
        ) from header_tr
    if header_tr is None:
        raise InputDataError(
            f"{bold_file} has no RepetitionTime in its JSON sidecar and none in its NIfTI "
            "header (pixdim[4]); add RepetitionTime (seconds) to its sidecar."
        )
    LOGGER.info("TR of %s taken from its NIfTI header (no RepetitionTime in sidecar).", bold_file)
    return header_tr


def _header_repetition_time(bold_file: str | os.PathLike) -> float | Exception | None:
    """pixdim[4] of a NIfTI header in seconds; None when unset, the error when unreadable."""
    import nibabel as nib

    try:
        header = nib.load(str(bold_file)).header
        zooms = header.get_zooms()
        t_unit = header.get_xyzt_units()[1]
    except Exception as exc:  # nibabel raises many types for bad files
        return exc
    if len(zooms) < 4 or not zooms[3] > 0:
        return None
    scale = {"msec": 1e-3, "usec": 1e-6}.get(t_unit, 1.0)
    return float(zooms[3]) * scale


def _query(layout: BIDSLayout, query: Mapping[str, Any]) -> list[str]:
    return sorted(layout.get(return_type="file", invalid_filters="allow", **query))


def _match(bold_entities: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {n: bold_entities.get(n, Query.NONE) for n in names}


def _format_not_found(what: str, query: Mapping[str, Any], found: list[str], fix: str) -> str:
    shown = ", ".join(Path(f).name for f in found[:10]) or "none"
    more = f" (+{len(found) - 10} more)" if len(found) > 10 else ""
    clean = {k: (v.name if isinstance(v, Query) else v) for k, v in query.items()
             if v is not Query.NONE}
    return f"{what}. Query: {clean}. Found files: {shown}{more}. {fix}"


def collect_runs(
    layout: BIDSLayout,
    participant_label: str,
    *,
    session: str | Sequence[str] | None = None,
    task: str | Sequence[str] | None = None,
    bids_filters: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Find every preprocessed BOLD run of one participant and its companions.

    Parameters
    ----------
    layout : bids.BIDSLayout
        From :func:`build_layout`.
    participant_label : str
        With or without ``sub-``.
    session, task : str or list of str, optional
        Restrict to these sessions / tasks.
    bids_filters : dict, optional
        ``--bids-filter-file`` content (see :func:`load_bids_filter_file`);
        merged over the io_spec.yaml queries and wins.

    Returns
    -------
    list of dict
        One dict per run, sorted by BOLD path, with keys ``bold`` (preprocessed
        BOLD path), ``mask``, ``confounds`` and ``raw_bold`` (paths or ``None``),
        ``t_r`` (seconds) and ``entities`` (``subject``, ``session``, ``task``,
        ``run``, ``space``; ``None`` where absent).

    Raises
    ------
    FileNotFoundError
        No preprocessed BOLD matches; or a run has no mask, or more than one
        candidate for its mask, confounds table or raw BOLD. Messages give the query
        and the files found.
    InputDataError
        A run has no repetition time.
    """
    spec = _io_spec()
    filters = _check_filters(dict(bids_filters or {}))
    subject = participant_label.removeprefix("sub-")
    selection: dict[str, Any] = {"subject": subject}
    if session is not None:
        selection["session"] = session
    if task is not None:
        selection["task"] = task

    bold_query = {**spec["queries"]["bold"], **selection, **filters.get("bold", {})}
    bold_files = _query(layout, bold_query)
    if not bold_files:
        found = _query(layout, {"subject": subject, "suffix": "bold"})
        found_spaces = {layout.parse_file_entities(f).get("space") for f in found}
        spaces = sorted(map(str, found_spaces - {None, bold_query.get("space")}))
        fix = (f"Preprocessed BOLD of this participant is in space(s) {', '.join(spaces)}: "
               "select one with --bids-filter-file, e.g. "
               f"{{\"bold\": {{\"space\": \"{spaces[0]}\"}}}}." if spaces else
               "Point --derivatives at the preprocessed data (fMRIPrep, SPM, ...) or relax "
               "--bids-filter-file (e.g. {\"bold\": {\"space\": \"T1w\"}}).")
        raise FileNotFoundError(
            _format_not_found(f"No preprocessed BOLD found for sub-{subject}", bold_query, found,
                              fix)
        )
    runs = []
    match_all = companion_entities(same_grid=False)
    match_img = companion_entities(same_grid=True)
    for bold in bold_files:
        ents = layout.parse_file_entities(bold)
        name = Path(bold).name
        run = {"bold": bold}
        for key, names, required in (
            ("mask", match_img, True),
            ("confounds", match_all, False),  # optional: --denoise-strategy none needs none
            ("raw_bold", match_all, False),
        ):
            candidates = [spec["queries"][key], *spec.get("fallbacks", {}).get(key, [])]
            query = {}
            hits: list[str] = []
            for base in candidates:
                query = {**base, **_match(ents, names), **filters.get(key, {})}
                if key == "raw_bold":
                    query["scope"] = "raw"
                hits = [h for h in _query(layout, query) if h != bold]
                if hits:
                    break
            if len(hits) > 1:
                raise FileNotFoundError(
                    _format_not_found(
                        f"More than one {key} file matches BOLD {name}",
                        query,
                        hits,
                        "Narrow it with --bids-filter-file "
                        f"(e.g. {{\"{key}\": {{\"res\": \"2\"}}}}).",
                    )
                )
            if not hits and required:
                found = _query(layout, {**_match(ents, match_all), "datatype": "func"})
                fix = ("msica needs a brain mask on the BOLD grid next to each BOLD, named "
                       "<prefix>_desc-brain_mask.nii.gz (fMRIPrep writes it; for SPM data save "
                       "the mask you used), or name it with --bids-filter-file.")
                raise FileNotFoundError(
                    _format_not_found(f"No {key} found for BOLD {name}", query, found, fix)
                )
            run[key] = hits[0] if hits else None
        run["t_r"] = get_repetition_time(layout, bold, raw_file=run["raw_bold"])
        run["entities"] = {
            k: ents.get(k) for k in ("subject", "session", "task", "run", "space")
        }
        runs.append(run)
    return runs
