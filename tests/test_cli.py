"""Command-line parsing, option cross-checks and exit codes (no workflow is run here)."""

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline import __version__
from workflows.exit_codes import ExitCode, exit_code_for
from workflows.cli.bids_app import parse_args
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
    with pytest.raises(SystemExit) as exc:
        parse_args([str(bids_dir), str(tmp_path / "out"), "subject"])
    assert exc.value.code == ExitCode.USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_output_equal_to_input_is_refused(bids_dir, template, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args([str(bids_dir), str(bids_dir), "participant", "--template", str(template)])
    assert exc.value.code == ExitCode.USAGE
    assert "suggestion: " + str(bids_dir / "derivatives" / "msica") in capsys.readouterr().err


def test_work_dir_containing_output_is_refused(bids_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args([str(bids_dir), str(tmp_path / "w" / "out"), "participant", "-w", str(tmp_path / "w")])
    assert exc.value.code == ExitCode.USAGE
    assert "must not contain the output folder" in capsys.readouterr().err


def test_bad_filter_file(bids_dir, tmp_path, capsys):
    bad = tmp_path / "filters.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        parse_args([str(bids_dir), str(tmp_path / "out"), "participant", "--bids-filter-file", str(bad)])
    assert exc.value.code == ExitCode.USAGE
    assert "is not valid JSON" in capsys.readouterr().err


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
    with pytest.raises(SystemExit) as exc:
        parse_args([str(bids_dir), str(tmp_path / "out"), "participant", "--config", str(cfg)])
    assert exc.value.code == ExitCode.USAGE
    assert "unknown option(s) ['denoise_strategi']" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [("--denoise-strategy", "simple", "--low-pass", "0.1",
                                    "--seed", "7"),
                                   ("--high-pass", "none", "--no-standardize"),
                                   ("--denoise-strategy", "none", "--gift-compatible")])
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
])
def test_conflicting_options_are_usage_errors(participant, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        parse_args(participant(*extra))
    assert exc.value.code == ExitCode.USAGE
    assert message in capsys.readouterr().err


def test_participant_level_needs_networks(bids_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args([str(bids_dir), str(tmp_path / "out"), "participant"])
    assert exc.value.code == ExitCode.USAGE
    assert "needs networks: give --template" in capsys.readouterr().err
    assert parse_args([str(bids_dir), str(tmp_path / "out"), "group"]).templates == ()


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
    from workflows.cli.bids_app import parse_args

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
