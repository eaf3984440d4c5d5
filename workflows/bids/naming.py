"""msica's output names: the one place that builds and parses them.

Every output file name comes from :func:`build_derivative_path` (pybids ``build_path``
with the patterns of ``bids_templates/msica_bids_config.json``); names are read back
with pybids' parser: :func:`file_entities` (input and derivative names),
:func:`source_entities` (what an output inherits) and :func:`scale_of`.

Names follow ``sub-<l>[_ses-<l>][_task-<l>][_acq-<l>]...[_run-<i>][_echo-<i>]
[_space-<l>][_res-<l>][_den-<l>][_atlas-<l>][_scale-<order>][_stat-<l>]_desc-<l>_<suffix><ext>``
under ``sub-<l>/[ses-<l>/]func/``, and ``group/[task-<l>_]...desc-<l>_<suffix><ext>``
for group-level files (pass no ``subject``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from bids.layout import parse_file_entities
from bids.layout.models import Config
from bids.layout.writing import build_path

from bids_templates import template_path

__all__ = ["ENTITIES", "SOURCE_ENTITIES", "build_derivative_path", "file_entities",
           "participant_of", "run_name", "scale_of", "source_entities", "subject_pca_name",
           "target_tag"]

#: Entities taken over from ``source_file`` (others, e.g. ``desc``, ``suffix``,
#: ``label``, ``hemi``, are the source's own and are not inherited).
SOURCE_ENTITIES = (
    "subject",
    "session",
    "task",
    "acquisition",
    "ceagent",
    "reconstruction",
    "direction",
    "run",
    "echo",
    "space",
    "res",
    "den",
)
#: How the entities of ``SOURCE_ENTITIES`` are written, in BIDS order: a run's name.
_RUN_PATTERN = ("sub-{subject}[_ses-{session}][_task-{task}][_acq-{acquisition}][_ce-{ceagent}]"
                "[_rec-{reconstruction}][_dir-{direction}][_run-{run}][_echo-{echo}]"
                "[_space-{space}][_res-{res}][_den-{den}]")


@lru_cache(maxsize=1)
def _msica_spec() -> dict:
    return json.loads(template_path("msica_bids_config.json").read_text())


@lru_cache(maxsize=1)
def _msica_config() -> Config:
    return Config.load(_msica_spec())


#: Every entity an msica output name may carry (from msica_bids_config.json).
ENTITIES: tuple[str, ...] = tuple(e["name"] for e in _msica_spec()["entities"])


def build_derivative_path(entities: Mapping[str, Any]) -> str:
    """Return the relative path of an msica output with these entities.

    Parameters
    ----------
    entities : mapping of str to str or int
        BIDS entities by their long names (``subject``, ``session``, ``task``,
        ``run``, ``space``, ``res``, ``atlas``, ``scale``, ``statistic``,
        ``desc``, ``suffix``, ``extension``...). ``desc``, ``suffix`` and
        ``extension`` are required; without ``subject`` the file goes to
        ``group/``. Values ``None`` are dropped.

    Returns
    -------
    str
        Path relative to the output directory, with ``/`` separators.

    Raises
    ------
    ValueError
        If no pattern of ``msica_bids_config.json`` accepts these entities
        (unknown entity, unknown suffix/extension pair, or ``desc`` missing).

    Examples
    --------
    >>> build_derivative_path({"subject": "01", "task": "rest", "scale": 10,
    ...     "desc": "ica", "suffix": "components", "extension": ".nii.gz"})
    'sub-01/func/sub-01_task-rest_scale-10_desc-ica_components.nii.gz'
    >>> build_derivative_path({"subject": "01", "task": "rest", "scale": 10,
    ...     "desc": "ica", "suffix": "timeseries", "extension": ".tsv"})
    'sub-01/func/sub-01_task-rest_scale-10_desc-ica_timeseries.tsv'
    >>> build_derivative_path({"subject": "01", "session": "retest", "task": "rest",
    ...     "run": "02", "space": "MNI152NLin2009cAsym", "res": "2", "scale": 50,
    ...     "desc": "ica", "suffix": "components", "extension": ".json"})
    'sub-01/ses-retest/func/sub-01_ses-retest_task-rest_run-02_space-MNI152NLin2009cAsym_res-2_scale-50_desc-ica_components.json'
    >>> build_derivative_path({"subject": "01", "task": "rest", "desc": "multiscale",
    ...     "suffix": "relmat", "extension": ".tsv"})
    'sub-01/func/sub-01_task-rest_desc-multiscale_relmat.tsv'
    >>> build_derivative_path({"subject": "01", "task": "rest", "desc": "qc",
    ...     "suffix": "qc", "extension": ".tsv"})
    'sub-01/func/sub-01_task-rest_desc-qc_qc.tsv'
    >>> build_derivative_path({"subject": "01", "task": "rest", "desc": "denoised",
    ...     "suffix": "bold", "extension": ".nii.gz"})
    'sub-01/func/sub-01_task-rest_desc-denoised_bold.nii.gz'
    >>> build_derivative_path({"task": "rest", "scale": 10, "desc": "template",
    ...     "suffix": "components", "extension": ".nii.gz"})
    'group/task-rest_scale-10_desc-template_components.nii.gz'
    >>> build_derivative_path({"desc": "diagnosis", "suffix": "metrics", "extension": ".tsv"})
    'group/desc-diagnosis_metrics.tsv'
    >>> build_derivative_path({"desc": "gradspectrum", "suffix": "timeseries",
    ...     "extension": ".tsv"})
    'group/desc-gradspectrum_timeseries.tsv'
    """
    clean = {k: v for k, v in entities.items() if v is not None and v != ""}
    unknown = sorted(set(clean) - set(ENTITIES))
    if unknown:
        raise ValueError(
            f"Could not build path with entities {clean}: unknown entities {unknown}; "
            f"msica outputs accept {list(ENTITIES)}."
        )
    ext = clean.get("extension")
    if ext is not None and not str(ext).startswith("."):
        clean["extension"] = f".{ext}"
    path = build_path(clean, _msica_spec()["default_path_patterns"], strict=True)
    if path is None:
        raise ValueError(
            f"Could not build path with entities {clean}. Every msica output needs 'desc', "
            "'suffix' and 'extension', and the suffix/extension pair must be one of the "
            "patterns in bids_templates/msica_bids_config.json."
        )
    return path


def scale_of(path: str | os.PathLike) -> int:
    """The ``scale`` entity of an msica file name (pattern of msica_bids_config.json).

    Examples
    --------
    >>> scale_of("group/scale-10_desc-groupica_components.nii.gz")
    10
    """
    config = [str(template_path("msica_bids_config.json"))]
    return int(parse_file_entities(Path(path).name, config=config)["scale"])


def file_entities(path: str | os.PathLike) -> dict[str, Any]:
    """The BIDS entities of a raw or derivative file (pybids' parser, long entity names).

    Examples
    --------
    >>> file_entities("/d/sub-01/func/sub-01_task-rest_run-01_desc-confounds_timeseries.tsv")
    {'subject': '01', 'task': 'rest', 'run': 01, 'suffix': 'timeseries', 'datatype': 'func', \
'extension': '.tsv', 'desc': 'confounds'}
    """
    return parse_file_entities(str(path), config=["bids", "derivatives"])


def source_entities(source_file: str | os.PathLike) -> dict[str, Any]:
    """Entities of ``source_file`` that msica outputs inherit (see ``SOURCE_ENTITIES``).

    Examples
    --------
    >>> source_entities("/d/sub-01/func/sub-01_task-rest_run-1_space-MNI152NLin2009cAsym"
    ...                 "_res-2_desc-preproc_bold.nii.gz")
    {'subject': '01', 'task': 'rest', 'run': 1, 'space': 'MNI152NLin2009cAsym', 'res': '2'}
    """
    parsed = file_entities(source_file)
    return {k: parsed[k] for k in SOURCE_ENTITIES if k in parsed}


def participant_of(path: str | os.PathLike) -> str:
    """Return ``sub-<label>`` of an input or derivative file.

    Examples
    --------
    >>> participant_of("/out/sub-07/func/sub-07_task-rest_desc-multiscale_relmat.tsv")
    'sub-07'
    """
    return f"sub-{file_entities(path)['subject']}"


def run_name(path: str | os.PathLike) -> str:
    """The name of the run a file comes from: its ``SOURCE_ENTITIES``, in BIDS order.

    The input BOLD of a run and every output made from it have the same run name.

    Examples
    --------
    >>> run_name("/o/sub-01/func/sub-01_task-rest_run-01_scale-4_desc-ica_components.nii.gz")
    'sub-01_task-rest_run-01'
    >>> run_name("/d/sub-01_ses-1_task-rest_space-MNI_res-2_desc-preproc_bold.nii.gz")
    'sub-01_ses-1_task-rest_space-MNI_res-2'
    """
    return build_path(source_entities(path), [_RUN_PATTERN], strict=True)


def subject_pca_name(source_file: str | os.PathLike) -> str:
    """Name of a run's subject-PCA file (work directory), from its BOLD file.

    :class:`~workflows.interfaces.groupica.SubjectPCA` writes it (with a ``.json``
    sidecar of the same name) and
    :func:`~workflows.group.groupica.collect_subject_pcas` finds it.

    Examples
    --------
    >>> subject_pca_name("/d/sub-01_task-rest_run-1_space-MNI_desc-preproc_bold.nii.gz")
    'sub-01_task-rest_run-1_space-MNI_desc-pca.npz'
    """
    return f"{run_name(source_file)}_desc-pca.npz"


def target_tag(target: str) -> str:
    """The ``desc`` value of a target's outputs (BIDS labels are alphanumeric).

    Examples
    --------
    >>> target_tag("treatment_response")
    'treatmentresponse'
    """
    return "".join(ch for ch in target if ch.isalnum())
