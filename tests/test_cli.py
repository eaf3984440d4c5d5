"""Command-line parsing, option cross-checks and exit codes (no workflow is run here)."""

import dataclasses
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline import __version__
from workflows.exit_codes import ExitCode, exit_code_for
from workflows.cli.bids_app import build_parser, parse_args
from workflows.cli import run
from workflows.config import Settings


@pytest.fixture
def bids_dir(tmp_path: Path) -> Path:
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    return root


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.nii.gz"
    nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4)).to_filename(path)
    return path


@pytest.fixture
def participant(bids_dir, tmp_path, template):
    """Command line of a template-mode participant level, plus extra options."""
    def argv(*extra: str) -> list[str]:
        return [str(bids_dir), str(tmp_path / "out"), "participant", "--template", str(template),
                "-w", str(tmp_path / "work"), *extra]
    return argv


def _usage_error(argv: list[str], capsys) -> str:
    """Parse ``argv``, which must be refused as a usage error (exit 64); return the stderr."""
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == ExitCode.USAGE
    return capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        run(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"msica {__version__}"


@pytest.mark.parametrize("spelling", ["--participant-label", "--participant_label"])
def test_participant_label_spellings(participant, spelling):
    settings = parse_args(participant(spelling, "sub-01", "02"))
    assert settings.participant_label == ("01", "02")
    assert settings.analysis_level == "participant"


def test_usage_errors_exit_64(bids_dir, tmp_path, capsys):
    assert "invalid choice" in _usage_error([str(bids_dir), str(tmp_path / "out"), "subject"],
                                            capsys)


def test_output_equal_to_input_is_refused(bids_dir, template, capsys):
    err = _usage_error([str(bids_dir), str(bids_dir), "participant", "--template", str(template)],
                       capsys)
    assert "suggestion: " + str(bids_dir / "derivatives" / "msica") in err


def test_work_dir_containing_output_is_refused(bids_dir, tmp_path, capsys):
    err = _usage_error([str(bids_dir), str(tmp_path / "w" / "out"), "participant",
                        "-w", str(tmp_path / "w")], capsys)
    assert "must not contain the output folder" in err


def test_bad_filter_file(bids_dir, tmp_path, capsys):
    bad = tmp_path / "filters.json"
    bad.write_text("{not json")
    err = _usage_error([str(bids_dir), str(tmp_path / "out"), "participant",
                        "--bids-filter-file", str(bad)], capsys)
    assert "is not valid JSON" in err


def test_config_file_sets_defaults_and_cli_wins(participant, tmp_path):
    cfg = tmp_path / "msica.toml"
    cfg.write_text('denoise_strategy = "compcor"\nfd_threshold = 0.3\n')
    argv = participant("--config", str(cfg))
    settings = parse_args(argv)
    assert settings.denoise_strategy == "compcor" and settings.fd_threshold == 0.3
    settings = parse_args([*argv, "--denoise-strategy", "scrubbing"])
    assert settings.denoise_strategy == "scrubbing" and settings.fd_threshold == 0.3


def test_config_file_unknown_key(bids_dir, tmp_path, capsys):
    cfg = tmp_path / "msica.toml"
    cfg.write_text("denoise_strategi = 'simple'\n")
    err = _usage_error([str(bids_dir), str(tmp_path / "out"), "participant", "--config", str(cfg)],
                       capsys)
    assert "unknown option(s) ['denoise_strategi']" in err


def test_config_paths_become_paths(bids_dir, tmp_path, template):
    labels = tmp_path / "labels.tsv"
    labels.write_text("index\tlabel\n1\tA\n2\tB\n3\tC\n")
    cfg = tmp_path / "msica.toml"
    cfg.write_text(f"templates = [{str(template)!r}]\ntemplate_labels = [{str(labels)!r}]\n"
                   f"work_dir = {str(tmp_path / 'work')!r}\n")
    settings = parse_args([str(bids_dir), str(tmp_path / "out"), "participant",
                           "--config", str(cfg)])
    assert settings.templates == (template,) and settings.template_labels == (labels,)
    assert settings.work_dir == tmp_path / "work"


def test_config_missing_template_is_a_usage_error(bids_dir, tmp_path, capsys):
    cfg = tmp_path / "msica.toml"
    cfg.write_text(f"templates = [{str(tmp_path / 'absent.nii.gz')!r}]\n")
    err = _usage_error([str(bids_dir), str(tmp_path / "out"), "participant",
                        "--config", str(cfg)], capsys)
    assert "absent.nii.gz does not exist" in err.strip().splitlines()[-1]


def test_run_settings_toml_reruns_the_same_settings(participant, tmp_path):
    filters = tmp_path / "filters.json"
    filters.write_text('{"bold": {"session": null, "task": "rest"}}')
    first = parse_args(participant("--denoise-strategy", "simple", "--high-pass", "none",
                                   "--bids-filter-file", str(filters), "--seed", "7",
                                   "--fnc-measure", "partial correlation"))
    recorded = first.write_toml()
    again = parse_args([str(first.bids_dir), str(tmp_path / "out2"), "participant",
                        "--config", str(recorded)])
    differ = {f.name for f in dataclasses.fields(Settings)
              if getattr(first, f.name) != getattr(again, f.name)}
    assert differ == {"output_dir", "run_uuid"}
    assert again.bids_filters == {"bold": {"session": None, "task": "rest"}}


def test_every_option_is_the_setting_of_its_name():
    """parse_args copies the parsed options into Settings by name: an option without a field
    of its name would be dropped, so each one (but the command line's own) has one."""
    cli_only = {"help", "version", "config", "skip_bids_validation"}
    dests = {action.dest for action in build_parser()._actions} - cli_only
    assert dests <= {field.name for field in dataclasses.fields(Settings)}


@pytest.mark.parametrize(("line", "message"), [
    ('backrecon_method = "ica-lite"', "backrecon_method = 'ica-lite'; choose from moo-icar, "
                                      "dual-regression."),
    ('fnc_measure = "covariance"',
     "fnc_measure = 'covariance'; choose from correlation, partial correlation."),
    ('connectivity = ["fnc", "bogus"]', "connectivity = ['fnc', 'bogus']; choose from fnc,"),
    ('device = "tpu"', "device = 'tpu'; choose from auto, cpu, cuda."),
    ("nprocs = 0", "nprocs = 0: 0 must be >= 1"),
    ("fd_threshold = -0.5", "fd_threshold = -0.5:"),
])
def test_config_values_are_checked_like_options(participant, tmp_path, capsys, line, message):
    """A --config value outside the option's choices (the registries) or type is one usage line."""
    cfg = tmp_path / "msica.toml"
    cfg.write_text(line + "\n")
    *usage, error = _usage_error(participant("--config", str(cfg)), capsys).strip().splitlines()
    assert usage[0].startswith("usage: msica")
    assert error.startswith(f"msica: error: --config {cfg}: {message}")


@pytest.mark.parametrize("extra", [("--denoise-strategy", "simple", "--low-pass", "0.1",
                                    "--seed", "7"),
                                   ("--high-pass", "none", "--no-standardize"),
                                   ("--denoise-strategy", "none", "--gift-compatible"),
                                   ("--no-reports",), ("--reports-only",)])
def test_settings_toml_round_trip(participant, tmp_path, extra):
    settings = parse_args(participant("--participant-label", "01", *extra))
    path = settings.write_toml()
    assert path.parent == tmp_path / "out" / "logs"
    assert settings.run_uuid in path.name
    assert Settings.from_toml(path) == settings


def test_denoise_defaults_leave_the_data_as_they_are(participant):
    """Chosen by measurement (docs/defaults.md): no regression, filtering or scaling."""
    default = parse_args(participant())
    assert (default.denoise_strategy, default.high_pass, default.low_pass, default.detrend,
            default.standardize) == ("none", None, None, False, False)
    given = parse_args(participant("--denoise-strategy", "simple", "--high-pass", "0.01",
                                   "--detrend"))
    assert (given.high_pass, given.detrend, given.standardize) == (0.01, True, False)
    off = parse_args(participant("--high-pass", "none", "--no-standardize"))
    assert (off.high_pass, off.standardize) == (None, False)


@pytest.mark.parametrize(("extra", "message"), [
    (("--denoise-strategy", "none", "--high-pass", "0.01", "--detrend"),
     "--denoise-strategy none leaves the data as they are; drop --detrend, --high-pass"),
    (("--gift-compatible", "--backrecon-method", "dual-regression"),
     "--gift-compatible is GIFT's MOO-ICAR back-reconstruction"),
    (("--high-pass", "-1"), "-1 must be > 0"),
    (("--no-reports", "--reports-only"), "not allowed with argument --no-reports"),
])
def test_conflicting_options_are_usage_errors(participant, capsys, extra, message):
    assert message in _usage_error(participant(*extra), capsys)


def test_participant_level_needs_networks(bids_dir, tmp_path, capsys):
    err = _usage_error([str(bids_dir), str(tmp_path / "out"), "participant"], capsys)
    assert "needs networks: give --template" in err
    assert parse_args([str(bids_dir), str(tmp_path / "out"), "group"]).templates == ()
    redraw = parse_args([str(bids_dir), str(tmp_path / "out"), "participant", "--reports-only"])
    assert redraw.reports_only and not redraw.no_reports  # only draws: needs no networks


def _exit_code(argv: list[str]) -> int:
    try:
        return run(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("command", [
    ["b", "o", "group"], ["simulate", "x"], ["demo"],
    ["submit", "b", "o", "--slurm-partition", "p"], ["predict", "b", "o", "--model", "m"],
    ["sites"]])
def test_every_command_exits_64_on_an_unknown_option(command, capsys):
    assert _exit_code([*command, "--bogus"]) == ExitCode.USAGE
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["simulate"], ["demo"], ["submit"], ["predict"], ["sites"]])
def test_help_shows_each_default_once_without_markup(command, capsys):
    assert _exit_code([*command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: [])" not in text
    assert not re.search(r"\(default: [^)]*\) \(default:", text) and "``" not in text


def test_missing_bids_dir_exits_66(tmp_path, template, capsys):
    code = run([str(tmp_path / "nope"), str(tmp_path / "out"), "participant",
                "--template", str(template), "-w", str(tmp_path / "work")])
    assert code == ExitCode.NO_INPUT
    err = capsys.readouterr().err
    assert "nope does not exist" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("exc", "code"),
    [(FileNotFoundError("x"), ExitCode.NO_INPUT), (ValueError("x"), ExitCode.USAGE),
     (RuntimeError("x"), ExitCode.ERROR)],
)
def test_exit_code_mapping(exc, code):
    assert exit_code_for(exc) == code


def test_boutiques_flag_writes_descriptor(tmp_path):
    import json

    out = tmp_path / "msica.json"
    assert run(["--boutiques", str(out)]) == ExitCode.OK
    descriptor = json.loads(out.read_text())
    assert descriptor["name"] == "msica"
    assert descriptor["tool-version"] == __version__


def test_submit_is_dispatched(capsys):
    assert run(["submit", "--help"]) == ExitCode.OK
    assert "--slurm-partition" in capsys.readouterr().out


def test_sites_is_dispatched(capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's --help exits inside the command
        run(["sites", "--help"])
    assert exc.value.code == 0
    assert "rankdad" in capsys.readouterr().out


def test_classifier_options_parse_into_settings(tmp_path):
    """--harmonize, --harmonize-protect, --site-column and --connectivity reach the settings."""
    from workflows.cli.bids_app import build_parser, parse_args

    bids = tmp_path / "bids"
    bids.mkdir()
    settings = parse_args([str(bids), str(tmp_path / "out"), "group", "--harmonize", "combat",
                           "--harmonize_protect", "age", "--site-column", "scanner",
                           "--connectivity", "tangent", "correlation"])
    assert settings.harmonize == "combat" and settings.harmonize_protect == ("age",)
    assert settings.site_column == "scanner"
    assert settings.connectivity == ("tangent", "correlation")
    defaults = parse_args([str(bids), str(tmp_path / "out"), "group"])
    assert (defaults.harmonize, defaults.connectivity, defaults.site_column) == \
        ("auto", ("fnc",), None)  # harmonization: the pipeline's "auto" rule by default
    with pytest.raises(SystemExit) as exc:
        parse_args([str(bids), str(tmp_path / "out"), "group", "--connectivity", "fnc",
                    "tangent"])
    assert exc.value.code == 64
