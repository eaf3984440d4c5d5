"""``msica BIDS_DIR OUTPUT_DIR {participant,group} [options]``: the BIDS-App command."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from pipeline import __version__
from pipeline.fnc.static import FNC_MEASURES
from pipeline.ica.backrecon import BACKRECON_METHODS
from workflows.cli import validators as val
from workflows.cli.base import MsicaParser, both, guarded, setup_logging
from workflows.config import (
    CONNECTIVITY,
    DENOISE_DEFAULTS,
    DENOISE_STRATEGIES,
    DEVICES,
    HARMONIZERS,
    PLUGINS,
    Settings,
    load_config_file,
)

__all__ = ["bids_app_command", "build_parser", "parse_args"]


def _check_denoise_options(opts: argparse.Namespace, parser: MsicaParser) -> None:
    """Check the filter, detrend and standardization options against the strategy.

    With ``--denoise-strategy none`` the data are left as they are, so an option
    that would change them is a usage error.
    """
    names = ("high_pass", "low_pass", "detrend", "standardize")
    active = sorted(name for name in names if getattr(opts, name) not in (None, False))
    if opts.denoise_strategy == "none" and active:
        flags = ", ".join("--" + name.replace("_", "-") for name in active)
        parser.error(f"--denoise-strategy none leaves the data as they are; drop {flags} or "
                     "choose a confound strategy (simple, scrubbing, compcor).")


def _config_defaults(parser: MsicaParser, path: Path, data: dict) -> dict:
    """``--config`` values checked and converted as the command line does its own.

    argparse applies neither choices nor types to defaults, so each value goes through
    its option's choices (which read the registries, e.g. ``backrecon_method``) and type
    (paths checked and made :class:`~pathlib.Path`, ``nprocs = 0`` refused) here; a value
    refused is one usage line (exit 64). ``bids_filters`` may also be the JSON text of
    the filters, as a run's own settings TOML records them.
    """
    converted = dict(data)
    for action in parser._actions:
        if action.dest not in data:
            continue
        value = data[action.dest]
        items = value if isinstance(value, list) else [value]
        if action.choices is not None:
            bad = [item for item in items if item not in action.choices]
            if bad:
                parser.error(f"--config {path}: {action.dest} = {value!r}; choose from "
                             f"{', '.join(map(str, action.choices))}.")
        if action.dest == "bids_filters" and isinstance(value, str) and value.lstrip()[:1] == "{":
            try:
                converted[action.dest] = json.loads(value)
            except json.JSONDecodeError as exc:
                parser.error(f"--config {path}: bids_filters is not valid JSON ({exc.msg}).")
            continue
        if not callable(action.type):
            continue
        try:
            done = [action.type(str(item)) if isinstance(item, (str, int, float))
                    and not isinstance(item, bool) else item for item in items]
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            parser.error(f"--config {path}: {action.dest} = {value!r}: {exc}")
        converted[action.dest] = done if isinstance(value, list) else done[0]
    return converted


def build_parser() -> MsicaParser:
    """The parser of ``msica BIDS_DIR OUTPUT_DIR {participant,group}`` (also used for Boutiques)."""
    parser = MsicaParser(
        prog="msica",
        description="msica: multi-scale ICA networks, FNC features and classifiers for BIDS fMRI. "
        "Other commands: 'msica simulate OUT_DIR', 'msica demo [OUT_DIR]', "
        "'msica submit BIDS_DIR OUTPUT_DIR --slurm-partition P' (SLURM array), "
        "'msica predict BIDS_DIR OUTPUT_DIR --model FILE' (score new participants), "
        "'msica sites' (multi-site training without pooling data: dsgd/dad/rankdad), "
        "'msica --boutiques [PATH]' (Boutiques descriptor).",
    )
    is_dir = partial(val.existing_dir, parser=parser)
    is_file = partial(val.existing_file, parser=parser)
    parser.add_argument("bids_dir", type=lambda p: Path(p).expanduser().absolute(),
                        help="root of the input BIDS dataset")
    parser.add_argument("output_dir", type=lambda p: Path(p).expanduser().absolute(),
                        help="where derivatives are written")
    parser.add_argument("analysis_level", choices=["participant", "group"],
                        help="participant: one workflow per participant; group: across participants")
    parser.add_argument("--version", action="version", version=f"msica {__version__}")

    g_bids = parser.add_argument_group("Options for filtering BIDS queries")
    g_bids.add_argument(*both("--participant-label"), dest="participant_label", nargs="+",
                        type=val.drop_sub_prefix, default=[],
                        help="participant labels to process, with or without 'sub-' (default: all)")
    g_bids.add_argument(*both("--session-label"), dest="session_label", nargs="+",
                        type=lambda s: s.removeprefix("ses-"), default=[],
                        help="session labels to process (default: all)")
    g_bids.add_argument("--task", help="task label to process (default: all tasks)")
    g_bids.add_argument(*both("--bids-filter-file"), dest="bids_filters",
                        type=partial(val.json_file, parser=parser), default={},
                        help="JSON file of pybids filters per query, e.g. "
                        '{"bold": {"session": "01", "run": 1}}')
    g_bids.add_argument("--derivatives", nargs="+", type=is_dir, default=[],
                        help="fMRIPrep-style derivatives folder(s) "
                        "(default: BIDS_DIR/derivatives/fmriprep when it exists)")
    g_bids.add_argument("--validate", action="store_true",
                        help="check every file name of BIDS_DIR against the BIDS specification "
                        "before running (exit code 16 on failure)")
    g_bids.add_argument(*both("--skip-bids-validation"), dest="skip_bids_validation",
                        action="store_true",
                        help="accepted for fMRIPrep compatibility; validation is off unless --validate")

    g_sci = parser.add_argument_group("Options for the analysis")
    g_sci.add_argument(*both("--denoise-strategy"), dest="denoise_strategy",
                       choices=DENOISE_STRATEGIES, default=DENOISE_DEFAULTS["denoise_strategy"],
                       help="confound regression: 'none' uses the runs as preprocessed (no "
                       "confounds table needed; chosen by measurement, see docs/defaults.md), or a "
                       "nilearn fMRIPrep strategy (load_confounds_strategy; needs the confounds "
                       "table)")
    g_sci.add_argument(*both("--high-pass"), dest="high_pass", type=val.cutoff_or_none,
                       default=DENOISE_DEFAULTS["high_pass"],
                       help="high-pass cut-off in Hz, or 'none' (default: none)")
    g_sci.add_argument(*both("--low-pass"), dest="low_pass", type=val.cutoff_or_none,
                       default=DENOISE_DEFAULTS["low_pass"],
                       help="low-pass cut-off in Hz, or 'none' (default: none)")
    g_sci.add_argument("--detrend", action=argparse.BooleanOptionalAction,
                       default=DENOISE_DEFAULTS["detrend"],
                       help="remove each voxel's linear trend while denoising (default: off)")
    g_sci.add_argument("--standardize", action=argparse.BooleanOptionalAction,
                       default=DENOISE_DEFAULTS["standardize"],
                       help="z-score each voxel's time series after denoising (default: off)")
    g_sci.add_argument(*both("--fd-threshold"), dest="fd_threshold", type=val.positive_float,
                       default=0.5, help="framewise displacement (mm) above which volumes are "
                       "scrubbed (strategy 'scrubbing')")
    g_sci.add_argument(*both("--min-volumes"), dest="min_volumes", type=val.positive_int, default=50,
                       help="runs with fewer (kept) volumes are refused")
    g_sci.add_argument(*both("--save-denoised"), dest="save_denoised", action="store_true",
                       help="also write the denoised BOLD series (large)")
    g_sci.add_argument("--template", dest="templates", action="append",
                       type=lambda p: Path(p).expanduser().absolute(), default=[],
                       help="4-D NIfTI template of networks (template mode), repeated for several "
                       "scales, or the group/ folder of a data-driven run (all its scales)")
    g_sci.add_argument(*both("--template-labels"), dest="template_labels", action="append",
                       type=is_file, default=[],
                       help="labels for each --template, in the same order: a labels TSV or "
                       "GIFT's domain file (e.g. Neuromark_fMRI_1.0.txt)")
    g_sci.add_argument(*both("--resample-template"), dest="resample_template",
                       action="store_true",
                       help="resample templates that are not on the BOLD grid (continuous interpolation)")
    g_sci.add_argument(*both("--backrecon-method"), dest="backrecon_method",
                       choices=list(BACKRECON_METHODS), default="moo-icar",
                       help="back-reconstruction of template networks per participant ("
                       + "; ".join(f"{name}: {method.summary}"
                                   for name, method in BACKRECON_METHODS.items()) + ")")
    g_sci.add_argument(*both("--gift-compatible"), dest="gift_compatible", action="store_true",
                       help="back-reconstruct exactly as GIFT's NeuroMark scICA path (MOO-ICAR in "
                       "GIFT's own optimiser, after removing the mean over voxels of each volume) "
                       "and also write the maps in GIFT's scale (desc-gift); use with "
                       "--denoise-strategy none to reproduce GIFT on the same preprocessed runs")
    g_sci.add_argument(*both("--model-orders"), dest="model_orders", nargs="+",
                       type=val.positive_int, default=[],
                       help="data-driven mode (without --template): group ICA model orders, e.g. "
                       "25 50 75 100; the participant level writes subject PCAs, the group level "
                       "fits the multi-scale group ICA and back-reconstructs every run (GICA)")
    g_sci.add_argument(*both("--ica-algorithm"), dest="ica_algorithm",
                       choices=["infomax", "fastica"], default="infomax",
                       help="data-driven mode: ICA algorithm of the group ICA")
    g_sci.add_argument(*both("--icasso-runs"), dest="icasso_runs", type=val.positive_int,
                       default=10, help="data-driven mode: ICASSO runs per model order "
                       "(1: a single ICA run, no stability index)")
    g_sci.add_argument(*both("--pca-dir"), dest="pca_dir",
                       type=lambda p: Path(p).expanduser().absolute(), default=None,
                       help="data-driven mode: folder of the participant-level subject PCAs, "
                       "shared by both levels (default: WORK_DIR/subject_pca)")
    g_sci.add_argument(*both("--fnc-measure"), dest="fnc_measure", choices=list(FNC_MEASURES),
                       default=Settings.fnc_measure,
                       help="static FNC of each run (the participant level in template mode, "
                       "the group level in data-driven mode; quote a name with a space): "
                       + "; ".join(f"{name}: {measure.description}"
                                   for name, measure in FNC_MEASURES.items()))
    g_sci.add_argument(*both("--dfnc-window"), dest="dfnc_window", type=val.positive_int,
                       default=30, help="dynamic FNC window length in TRs")
    g_sci.add_argument("--targets", nargs="+", default=[],
                       help="group level: participants.tsv columns to classify (e.g. diagnosis "
                       "medication response); medication and response use patients only")
    g_sci.add_argument("--confounds", nargs="*", default=["age", "sex"],
                       help="group level: participants.tsv columns regressed out of the features "
                       "inside training folds (absent columns are skipped)")
    g_sci.add_argument(*both("--n-permutations"), dest="n_permutations", type=int, default=100,
                       help="group level: label permutations of the whole nested CV (0: none; "
                       "the results then say that chance has not been tested)")
    g_sci.add_argument(*both("--site-column"), dest="site_column", default=None,
                       help="group level: participants.tsv column of the sites (outer and inner "
                       "folds leave sites out; harmonization per site); default 'site' when "
                       "present, else stratified k-fold")
    g_sci.add_argument("--harmonize", choices=HARMONIZERS, default=Settings.harmonize,
                       help="group level: site harmonization of the classifier features inside "
                       "the training folds (auto, the default: ComBat when a training set holds "
                       "2+ sites of 20+ participants each, else none; the choice is recorded; "
                       "combat: ComBat; a test or new site is harmonized "
                       "from its own features, never its labels)")
    g_sci.add_argument(*both("--harmonize-protect"), dest="harmonize_protect", nargs="*",
                       default=["age", "sex"],
                       help="group level: participants.tsv covariates whose effects "
                       "harmonization keeps (absent columns are skipped; never the target)")
    g_sci.add_argument("--connectivity", nargs="+", choices=CONNECTIVITY, default=["fnc"],
                       help="group level: classifier features: fnc (the participant level's "
                       "multi-scale FNC edges) or connectivity kinds of the multi-scale network "
                       "time courses, learned inside the folds; several: their models' "
                       "probabilities are averaged")
    g_sci.add_argument("--introspect", action="store_true",
                       help="group level: also train the torch MLP on each target and record "
                       "per-layer, per-group gradient spectra (on GPU with --device cuda/auto)")
    g_sci.add_argument("--config", type=is_file,
                       help="TOML file of option defaults (underscore names); the command line wins")

    g_reports = parser.add_argument_group(
        "Options for the HTML reports").add_mutually_exclusive_group()
    g_reports.add_argument(*both("--no-reports"), dest="no_reports", action="store_true",
                           help="run the workflows and write the derivatives, but draw no HTML "
                           "reports")
    g_reports.add_argument(*both("--reports-only"), dest="reports_only", action="store_true",
                           help="run no workflow: draw this level's HTML reports again from the "
                           "derivatives already in OUTPUT_DIR (exit code 66 if they are missing)")

    g_exec = parser.add_argument_group("Options for performance and execution")
    g_exec.add_argument("-w", *both("--work-dir"), dest="work_dir",
                        type=lambda p: Path(p).expanduser().absolute(),
                        default=Path("work").absolute(), help="working directory (Nipype cache)")
    g_exec.add_argument("--nprocs", "--n-cpus", "--n_cpus", dest="nprocs", type=val.positive_int,
                        default=1, help="maximum number of processes")
    g_exec.add_argument(*both("--omp-nthreads"), dest="omp_nthreads", type=val.positive_int,
                        default=1, help="maximum number of threads per process")
    g_exec.add_argument("--mem", dest="mem_gb", type=val.positive_float, default=None,
                        help="memory in GB that running steps may hold at once (default: 90%% of the "
                        "machine's); each run's heavy steps declare what they need")
    g_exec.add_argument("--plugin", choices=PLUGINS, default="MultiProc", help="Nipype plugin")
    g_exec.add_argument("--device", choices=DEVICES, default="auto",
                        help="torch device for ICA and models")
    g_exec.add_argument(*both("--stop-on-first-crash"), dest="stop_on_first_crash",
                        action="store_true", help="stop at the first failing participant")
    g_exec.add_argument("--seed", type=int, default=0, help="master random seed")
    g_exec.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging; tracebacks for errors")
    return parser


def parse_args(argv: Sequence[str]) -> Settings:
    """Parse a BIDS-App command line into frozen :class:`~workflows.config.Settings`.

    Options are checked against each other here, with a suggested fix.
    """
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.config is not None:
        try:
            config = load_config_file(opts.config)
        except ValueError as exc:
            parser.error(str(exc))
        parser.set_defaults(**_config_defaults(parser, opts.config, config))
        opts = parser.parse_args(argv)

    if opts.output_dir == opts.bids_dir:
        parser.error(
            "the output folder is the same as the input BIDS folder; please modify the output "
            f"path (suggestion: {opts.bids_dir / 'derivatives' / 'msica'})."
        )
    if opts.work_dir == opts.output_dir or opts.work_dir in opts.output_dir.parents:
        parser.error(f"the work directory {opts.work_dir} must not contain the output folder; "
                     "use -w with another path.")
    for template in opts.templates:
        if not template.exists():
            parser.error(f"file {template} does not exist; check the path (and the "
                         "container's -B binds).")
    opts.templates, opts.template_labels = val.expand_template_dirs(
        opts.templates, opts.template_labels, parser=parser)
    if len(opts.templates) != len(opts.template_labels) and opts.template_labels:
        parser.error(f"got {len(opts.templates)} --template and {len(opts.template_labels)} "
                     "--template-labels; give one labels file per template (or none).")
    if opts.templates and opts.model_orders:
        parser.error("--template (template mode) and --model-orders (data-driven mode) "
                     "exclude each other; give one of them.")
    if (opts.analysis_level == "participant" and not opts.templates and not opts.model_orders
            and not opts.reports_only):
        parser.error("the participant level needs networks: give --template (template mode, "
                     "e.g. a NeuroMark NIfTI) or --model-orders (data-driven mode, e.g. 25 50).")
    gift_methods = [name for name, method in BACKRECON_METHODS.items()
                    if method.gift_description is not None]
    if opts.gift_compatible and (opts.model_orders or opts.backrecon_method not in gift_methods):
        parser.error("--gift-compatible is GIFT's MOO-ICAR back-reconstruction of a template; "
                     f"use it with --template and --backrecon-method {' or '.join(gift_methods)}.")
    if opts.n_permutations < 0:
        parser.error(f"--n-permutations {opts.n_permutations} is negative; give 0 (no test) "
                     "or more.")
    if "fnc" in opts.connectivity and len(opts.connectivity) > 1:
        parser.error("--connectivity fnc (the participant level's FNC edges) cannot be mixed "
                     "with connectivity kinds of the time courses; give fnc alone or kinds.")
    if len(set(opts.model_orders)) != len(opts.model_orders):
        parser.error(f"--model-orders {' '.join(map(str, opts.model_orders))} repeats an "
                     "order; give distinct orders.")
    _check_denoise_options(opts, parser)
    derivatives = tuple(opts.derivatives)
    if not derivatives and (opts.bids_dir / "derivatives" / "fmriprep").is_dir():
        derivatives = (opts.bids_dir / "derivatives" / "fmriprep",)
    # Every setting is the option of the same name; lists become tuples (settings are frozen).
    values = {field.name: getattr(opts, field.name) for field in dataclasses.fields(Settings)
              if hasattr(opts, field.name)}
    values.update({name: tuple(value) for name, value in values.items()
                   if isinstance(value, list)})
    return Settings(**{
        **values,
        "derivatives": derivatives,
        "model_orders": tuple(sorted(opts.model_orders)),
        "connectivity": tuple(dict.fromkeys(opts.connectivity)),
    })


def bids_app_command(argv: Sequence[str]) -> int:
    """Run the level ``argv`` asks for; return the exit code."""
    settings = parse_args(argv)
    setup_logging(settings.verbose)

    def _go() -> int:
        from workflows.execution.levels import run_level

        return run_level(settings)

    return guarded(_go, verbose=settings.verbose)
