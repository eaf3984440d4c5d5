"""The Boutiques descriptor: valid for ``bosh``, faithful to the CLI parser, committed copy fresh.

Validation and command-line rendering are Boutiques' own (``bosh validate``'s
:func:`boutiques.validator.validate_descriptor`, ``bosh exec simulate``).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pytest
from boutiques import bosh
from boutiques.validator import DescriptorValidationError, validate_descriptor

from bids_templates import template_path
from workflows.cli.boutiques import boutiques_command, boutiques_descriptor, write_boutiques
from workflows.cli.bids_app import build_parser, parse_args


def test_descriptor_passes_bosh_validate():
    validate_descriptor(boutiques_descriptor())  # raises DescriptorValidationError if invalid
    bosh(["validate", str(template_path("msica.boutiques.json"))])  # the committed file


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("tool-version"), "'tool-version' is a required property"),
        (lambda d: d["inputs"][0].update(id="bids-dir"), "does not match"),
        (lambda d: d.update({"command-line": "msica"}), "not in command-line"),
        (lambda d: d["inputs"][0].update(type="Directory"), "is not valid under any"),
    ],
)
def test_bosh_validate_rejects_broken_descriptors(mutate, message):
    """The validation above can fail: each mutation of the descriptor is refused."""
    desc = boutiques_descriptor()
    mutate(desc)
    with pytest.raises(DescriptorValidationError, match=message):
        validate_descriptor(desc)


def test_one_input_per_parser_action():
    parser = build_parser()
    actions = [a for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]
    inputs = {i["id"]: i for i in boutiques_descriptor()["inputs"]}
    assert list(inputs) == [a.dest for a in actions]
    for action in actions:
        inp = inputs[action.dest]
        if isinstance(action, argparse.BooleanOptionalAction):
            assert inp["value-choices"] == action.option_strings and inp["optional"] is True
        elif action.option_strings:
            assert inp["command-line-flag"] in action.option_strings
            assert inp["optional"] is True
        else:
            assert inp["optional"] is False and "command-line-flag" not in inp
        if action.choices is not None:
            assert inp["value-choices"] == list(action.choices)
    assert inputs["nprocs"]["type"] == "Number" and inputs["nprocs"]["integer"] is True
    assert inputs["fd_threshold"]["type"] == "Number" and inputs["fd_threshold"]["integer"] is False
    assert inputs["high_pass"]["type"] == "String"  # a frequency or 'none'
    assert inputs["detrend"]["value-choices"] == ["--detrend", "--no-detrend"]
    assert inputs["validate"]["type"] == "Flag"
    assert inputs["bids_dir"]["type"] == "File"
    assert inputs["participant_label"]["list"] is True


def _render(tmp_path, invocation: dict) -> list[str]:
    """The command line ``bosh exec simulate`` builds from the committed descriptor."""
    path = tmp_path / "invocation.json"
    path.write_text(json.dumps(invocation, default=str))
    out = bosh(["exec", "simulate", str(template_path("msica.boutiques.json")), "-i", str(path)])
    return shlex.split(out.shell_command)


def test_rendered_invocation_parses_back(tmp_path):
    """A command line built from the descriptor is accepted by msica with the same values."""
    bids = tmp_path / "bids"
    bids.mkdir()
    templates = [tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz"]
    for path in templates:
        path.write_bytes(b"")
    argv = _render(tmp_path, {
        "bids_dir": bids, "output_dir": tmp_path / "out", "analysis_level": "participant",
        "participant_label": ["01", "sub-02"], "templates": templates, "nprocs": 3,
        "high_pass": "0.02", "save_denoised": True, "plugin": "Linear", "work_dir": tmp_path / "w",
        "detrend": "--detrend", "denoise_strategy": "compcor",
    })
    assert argv[0] == "msica"
    settings = parse_args(argv[1:])
    assert settings.participant_label == ("01", "02")
    assert tuple(map(str, settings.templates)) == tuple(map(str, templates))
    assert settings.nprocs == 3 and settings.high_pass == 0.02 and settings.detrend is True
    assert settings.save_denoised is True and settings.plugin == "Linear"
    assert settings.denoise_strategy == "compcor" and settings.min_volumes == 50


def test_committed_descriptor_is_fresh():
    """bids_templates/msica.boutiques.json equals a fresh generation (regenerate with
    ``msica --boutiques bids_templates/msica.boutiques.json``)."""
    committed = json.loads(template_path("msica.boutiques.json").read_text())
    assert committed == json.loads(json.dumps(boutiques_descriptor()))


def test_boutiques_command(tmp_path, capsys):
    path = tmp_path / "d.json"
    assert boutiques_command([str(path)]) == 0
    assert json.loads(path.read_text()) == json.loads(json.dumps(boutiques_descriptor()))
    capsys.readouterr()
    assert boutiques_command([]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "msica"
    assert boutiques_command(["a", "b"]) == 64
    assert "usage: msica --boutiques" in capsys.readouterr().err


def test_write_boutiques_returns_path(tmp_path):
    out = write_boutiques(tmp_path / "sub" / "x.json")
    assert out == Path(tmp_path / "sub" / "x.json") and out.is_file()



def test_report_options_exclude_each_other_in_the_descriptor(tmp_path):
    """--reports-only renders and parses back; its group with --no-reports is exclusive."""
    bids = tmp_path / "bids"
    bids.mkdir()
    settings = parse_args(_render(tmp_path, {
        "bids_dir": bids, "output_dir": tmp_path / "out", "analysis_level": "group",
        "reports_only": True})[1:])
    assert settings.reports_only and not settings.no_reports
    groups = {g["id"]: g for g in boutiques_descriptor()["groups"]}
    assert groups["options_for_the_html_reports"]["members"] == ["no_reports", "reports_only"]
    assert groups["options_for_the_html_reports"]["mutually-exclusive"] is True
    assert not any(g.get("mutually-exclusive") for i, g in groups.items()
                   if i != "options_for_the_html_reports")
