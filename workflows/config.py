"""The frozen settings of one msica run, and their TOML round trip.

The settings object is built once by :func:`workflows.cli.bids_app.parse_args` and read
only by the top-level builders (:mod:`workflows.participant.base`, the level runners of
:mod:`workflows.execution.levels`); everything below gets plain keyword arguments, with
the options of one concern as one frozen dataclass filled by :func:`options_from_settings`
(:class:`~workflows.participant.denoise.DenoiseOptions`,
:class:`~workflows.participant.networks.NetworkOptions`,
:class:`~workflows.group.base.ClassifierOptions`). Each run writes its settings to a
run-specific file, ``<output_dir>/logs/msica-<run_uuid>.toml``, never to a shared path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from pipeline.classify.harmonize import HARMONIZE_OPTIONS
from pipeline.classify.search import CLASSIFIER_DEFAULTS
from pipeline.fnc.static import DEFAULT_FNC_MEASURE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOGGER = logging.getLogger("msica.cli")

T = TypeVar("T")

__all__ = ["DENOISE_DEFAULTS", "RUN_FIELDS", "Settings", "load_config_file", "new_run_uuid",
           "options_from_settings"]

DENOISE_STRATEGIES = ("simple", "scrubbing", "compcor", "none")
#: Denoising defaults, chosen by measurement (benchmarks/defaults.py, docs/defaults.md):
#: on real SPM runs and on simulated truth, confound regression, high-pass filtering,
#: detrending and above all per-voxel z-scoring moved network maps away from GIFT's and
#: from the planted networks. Network time courses are still motion-regressed, detrended,
#: despiked and low-passed before FNC, as in GIFT.
DENOISE_DEFAULTS = {"denoise_strategy": "none", "high_pass": None, "low_pass": None,
                    "detrend": False, "standardize": False}
PLUGINS = ("MultiProc", "Linear", "SLURM")
DEVICES = ("auto", "cpu", "cuda")
#: Site harmonization options of the classifiers ("auto": ComBat by its rule, see
#: pipeline.classify.harmonize.resolve_harmonize).
HARMONIZERS = HARMONIZE_OPTIONS
#: Classifier features: msica's multi-scale FNC edges, or a connectivity kind of the network
#: time courses (pipeline.classify.connectivity.CONNECTIVITY_KINDS).
CONNECTIVITY = ("fnc", "correlation", "partial_correlation", "covariance", "tangent")


def new_run_uuid() -> str:
    """Return a sortable, unique run identifier (``YYYYmmdd-HHMMSS_<uuid4>``)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{uuid.uuid4()}"


@dataclass(frozen=True)
class Settings:
    """All options of one run (see ``msica --help`` for their meaning)."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    derivatives: tuple[Path, ...] = ()
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    task: str | None = None
    bids_filters: dict[str, Any] = field(default_factory=dict)
    validate: bool = False
    # science
    denoise_strategy: str = DENOISE_DEFAULTS["denoise_strategy"]
    high_pass: float | None = DENOISE_DEFAULTS["high_pass"]
    low_pass: float | None = None
    detrend: bool = DENOISE_DEFAULTS["detrend"]
    standardize: bool = DENOISE_DEFAULTS["standardize"]
    fd_threshold: float = 0.5
    min_volumes: int = 50
    save_denoised: bool = False
    templates: tuple[Path, ...] = ()
    template_labels: tuple[Path, ...] = ()
    backrecon_method: str = "moo-icar"
    gift_compatible: bool = False
    resample_template: bool = False
    fnc_measure: str = DEFAULT_FNC_MEASURE
    dfnc_window: int = 30
    model_orders: tuple[int, ...] = ()
    ica_algorithm: str = "infomax"
    icasso_runs: int = 10
    pca_dir: Path | None = None
    targets: tuple[str, ...] = ()
    confounds: tuple[str, ...] = ("age", "sex")
    n_permutations: int = 100
    site_column: str | None = None
    harmonize: str = CLASSIFIER_DEFAULTS["harmonize"]
    harmonize_protect: tuple[str, ...] = ("age", "sex")
    connectivity: tuple[str, ...] = ("fnc",)
    introspect: bool = False
    # reports
    no_reports: bool = False
    reports_only: bool = False
    # execution
    nprocs: int = 1
    omp_nthreads: int = 1
    mem_gb: float | None = None
    plugin: str = "MultiProc"
    device: str = "auto"
    stop_on_first_crash: bool = False
    seed: int = 0
    verbose: int = 0
    run_uuid: str = field(default_factory=new_run_uuid)

    @property
    def subject_pca_dir(self) -> Path:
        """Folder of the subject PCAs of data-driven mode (default ``WORK_DIR/subject_pca``)."""
        return self.pca_dir if self.pca_dir is not None else self.work_dir / "subject_pca"

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as TOML/JSON-serializable plain types."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [v if isinstance(v, int) else str(v) for v in value]
            elif value is None and f.name in _CUTOFF_FIELDS:
                value = "none"  # TOML has no null; a cut-off of None means no filter
            elif value is None:
                continue  # absent means the default
            out[f.name] = value
        return out

    def write_toml(self) -> Path:
        """Write the settings to ``<output_dir>/logs/msica-<run_uuid>.toml``; return the path."""
        logs = self.output_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"msica-{self.run_uuid}.toml"
        data = self.to_dict()
        data["bids_filters"] = json.dumps(self.bids_filters)  # nested dicts of any depth
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(tomli_w.dumps({"msica": data}))
        tmp.replace(path)
        return path

    @classmethod
    def from_toml(cls, path: Path) -> "Settings":
        """Read settings written by :meth:`write_toml`."""
        data = tomllib.loads(Path(path).read_text())["msica"]
        data["bids_filters"] = json.loads(data.get("bids_filters", "{}"))
        return cls(**_coerce(data))


_PATH_FIELDS = {"bids_dir", "output_dir", "work_dir", "pca_dir"}
_CUTOFF_FIELDS = {"high_pass", "low_pass"}
_PATH_TUPLE_FIELDS = {"derivatives", "templates", "template_labels"}
_STR_TUPLE_FIELDS = {"participant_label", "session_label", "targets", "confounds",
                     "harmonize_protect", "connectivity"}


def options_from_settings(options: type[T], settings: Settings, **renamed: str) -> T:
    """Build a frozen options class from the settings of the same names.

    Parameters
    ----------
    options : type
        A frozen dataclass such as
        :class:`~workflows.participant.denoise.DenoiseOptions`,
        :class:`~workflows.participant.networks.NetworkOptions` or
        :class:`~workflows.group.base.ClassifierOptions`.
    settings : Settings
        The run settings.
    **renamed : str
        ``field="settings_name"`` for a field whose setting is named otherwise.

    Examples
    --------
    >>> from pathlib import Path
    >>> from workflows.participant.networks import NetworkOptions
    >>> settings = Settings(bids_dir=Path("/b"), output_dir=Path("/o"), work_dir=Path("/w"),
    ...                     analysis_level="participant", backrecon_method="dual-regression")
    >>> options_from_settings(NetworkOptions, settings, method="backrecon_method").method
    'dual-regression'
    """
    return options(**{f.name: getattr(settings, renamed.get(f.name, f.name))
                      for f in dataclasses.fields(options)})


def _coerce(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key in _CUTOFF_FIELDS & out.keys():
        out[key] = None if out[key] == "none" else float(out[key])
    for key in _PATH_FIELDS & out.keys():
        out[key] = Path(out[key])
    for key in _PATH_TUPLE_FIELDS & out.keys():
        out[key] = tuple(Path(v) for v in out[key])
    for key in _STR_TUPLE_FIELDS & out.keys():
        out[key] = tuple(str(v) for v in out[key])
    if "model_orders" in out:
        out["model_orders"] = tuple(int(v) for v in out["model_orders"])
    return out


#: Settings that each run takes from its command line (positional arguments, run id),
#: never from ``--config``.
RUN_FIELDS = frozenset({"bids_dir", "output_dir", "analysis_level", "run_uuid"})


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a ``--config`` TOML file into option defaults.

    Keys are the fields of :class:`Settings` (``denoise_strategy = "compcor"``,
    ``templates = ["nm.nii"]``), either at the top level or under an ``[msica]``
    table, so a run's own ``logs/msica-<run_uuid>.toml`` can be given again; its
    :data:`RUN_FIELDS` are taken from the command line instead.

    Raises
    ------
    ValueError
        If the file is not valid TOML or names an unknown option.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config {path} is not valid TOML ({exc}); fix the syntax.") from exc
    data = data.get("msica", data)
    recorded = sorted(RUN_FIELDS & data.keys())
    if recorded:
        LOGGER.info("--config %s: %s taken from the command line, not the file.", path,
                    ", ".join(recorded))
        data = {key: value for key, value in data.items() if key not in RUN_FIELDS}
    known = {f.name for f in dataclasses.fields(Settings)} - RUN_FIELDS
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"--config {path} has unknown option(s) {unknown}; known options are {sorted(known)}."
        )
    return data
