"""The Boutiques descriptor: schema rules, faithfulness to the CLI parser, committed copy fresh.

Neither ``boutiques`` nor ``jsonschema`` is installed, so the rules of the
official schema (boutiques/schema/descriptor.schema.json, version 0.5) and
the extra checks of ``bosh validate`` that the descriptor can violate are
written out here.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest

from bids_templates import template_path
from workflows.boutiques import boutiques_command, boutiques_descriptor, write_boutiques
from workflows.cli import _build_parser, parse_args

ID = re.compile(r"^[0-9,_,a-z,A-Z]*$")
TOP_REQUIRED = {"name", "description", "command-line", "schema-version", "inputs", "tool-version"}
TOP_ALLOWED = TOP_REQUIRED | {
    "deprecated-by-doi", "author", "url", "descriptor-url", "doi", "shell", "tool-doi",
    "container-image", "environment-variables", "groups", "tests", "online-platform-urls",
    "output-files", "invocation-schema", "suggested-resources", "tags", "error-codes", "custom",
}
INPUT_ALLOWED = {
    "id", "name", "type", "description", "value-key", "list", "list-separator", "optional",
    "command-line-flag", "requires-inputs", "disables-inputs", "command-line-flag-separator",
    "default-value", "value-choices", "value-requires", "value-disables", "integer", "minimum",
    "maximum", "exclusive-minimum", "exclusive-maximum", "min-list-entries", "max-list-entries",
    "uses-absolute-path",
}
OUTPUT_ALLOWED = {
    "id", "name", "description", "value-key", "path-template", "conditional-path-template",
    "path-template-stripped-extensions", "list", "optional", "command-line-flag",
    "command-line-flag-separator", "uses-absolute-path", "file-template",
}
TYPES = {"String", "File", "Flag", "Number"}


def schema_errors(desc: dict) -> list[str]:
    """The subset of the Boutiques 0.5 schema (and bosh validate) rules msica can break."""
    errors = []
    if missing := TOP_REQUIRED - desc.keys():
        errors.append(f"missing top-level keys {missing}")
    if extra := desc.keys() - TOP_ALLOWED:
        errors.append(f"unknown top-level keys {extra}")
    if desc.get("schema-version") != "0.5":
        errors.append("schema-version must be '0.5'")
    for key in ("name", "description", "command-line", "tool-version"):
        if not isinstance(desc.get(key), str) or not desc.get(key):
            errors.append(f"{key} must be a non-empty string")
    image = desc.get("container-image", {})
    if image and (image.get("type") not in ("docker", "singularity") or not image.get("image")
                  or image.keys() - {"type", "image", "entrypoint", "index", "container-opts",
                                     "working-directory", "container-hash"}):
        errors.append(f"bad container-image {image}")
    inputs = desc.get("inputs", [])
    if not inputs:
        errors.append("inputs must have at least one item")
    ids = [i.get("id") for i in inputs]
    if len(set(ids)) != len(ids):
        errors.append("input ids are not unique")
    keys = [i["value-key"] for i in inputs if "value-key" in i]
    if len(set(keys)) != len(keys):
        errors.append("value-keys are not unique")
    command_line = desc.get("command-line", "")
    for inp in inputs:
        name = inp.get("id")
        if not {"id", "name", "type"} <= inp.keys():
            errors.append(f"input {name}: needs id, name and type")
        if extra := inp.keys() - INPUT_ALLOWED:
            errors.append(f"input {name}: unknown keys {extra}")
        if not ID.match(name or "") or not name:
            errors.append(f"input id {name!r} does not match {ID.pattern}")
        kind = inp.get("type")
        if kind not in TYPES:
            errors.append(f"input {name}: type {kind!r} not in {TYPES}")
        if "value-key" in inp and inp["value-key"] not in command_line:
            errors.append(f"input {name}: value-key {inp['value-key']} not in command-line")
        if kind == "Flag":
            if inp.get("list"):
                errors.append(f"input {name}: a Flag cannot be a list")
            if "command-line-flag" not in inp:
                errors.append(f"input {name}: a Flag needs a command-line-flag")
            if not inp.get("optional", False):
                errors.append(f"input {name}: a Flag must be optional")
        if "value-choices" in inp:
            if kind not in ("String", "Number"):
                errors.append(f"input {name}: value-choices only for String/Number")
            if "default-value" in inp and inp["default-value"] not in inp["value-choices"]:
                errors.append(f"input {name}: default not in value-choices")
        for key in ("integer", "minimum", "maximum"):
            if key in inp and kind != "Number":
                errors.append(f"input {name}: {key} only for Number")
        if "exclusive-minimum" in inp and "minimum" not in inp:
            errors.append(f"input {name}: exclusive-minimum needs minimum")
        for key in ("min-list-entries", "max-list-entries", "list-separator"):
            if key in inp and "list" not in inp:
                errors.append(f"input {name}: {key} needs list")
        default = inp.get("default-value")
        if default is not None:
            if kind == "Number" and (not isinstance(default, (int, float))
                                     or (inp.get("integer") and not isinstance(default, int))):
                errors.append(f"input {name}: default {default!r} is not a valid Number")
            if "minimum" in inp and isinstance(default, (int, float)) and default < inp["minimum"]:
                errors.append(f"input {name}: default below minimum")
    for out in desc.get("output-files", []):
        name = out.get("id")
        if not {"id", "name"} <= out.keys() or not ID.match(name or ""):
            errors.append(f"output {name}: needs id (pattern) and name")
        if ("path-template" in out) == ("conditional-path-template" in out):
            errors.append(f"output {name}: exactly one of path-template/conditional-path-template")
        if extra := out.keys() - OUTPUT_ALLOWED:
            errors.append(f"output {name}: unknown keys {extra}")
        for key in re.findall(r"\[[A-Z_]+\]", out.get("path-template", "")):
            if key not in keys:
                errors.append(f"output {name}: {key} is no input's value-key")
    for group in desc.get("groups", []):
        if not {"id", "name", "members"} <= group.keys() or not ID.match(group["id"]):
            errors.append(f"group {group.get('id')}: needs id (pattern), name, members")
        if unknown := set(group.get("members", [])) - set(ids):
            errors.append(f"group {group['id']}: unknown members {unknown}")
    for code in desc.get("error-codes", []):
        if not isinstance(code.get("code"), int) or not isinstance(code.get("description"), str):
            errors.append(f"bad error-code {code}")
    return errors


def test_descriptor_follows_schema_rules():
    assert schema_errors(boutiques_descriptor()) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("tool-version"), "missing top-level keys"),
        (lambda d: d["inputs"][0].update(id="bids-dir"), "does not match"),
        (lambda d: d.update({"command-line": "msica"}), "not in command-line"),
        (lambda d: d["inputs"][0].update(type="Directory"), "not in"),
    ],
)
def test_schema_checker_catches_violations(mutate, message):
    """The embedded rules are not vacuous: each mutation is reported."""
    desc = boutiques_descriptor()
    mutate(desc)
    assert any(message in e for e in schema_errors(desc))


def test_one_input_per_parser_action():
    parser = _build_parser()
    actions = [a for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]
    inputs = {i["id"]: i for i in boutiques_descriptor()["inputs"]}
    assert list(inputs) == [a.dest for a in actions]
    for action in actions:
        inp = inputs[action.dest]
        if action.option_strings:
            assert inp["command-line-flag"] in action.option_strings
            assert inp["optional"] is True
        else:
            assert inp["optional"] is False and "command-line-flag" not in inp
        if action.choices is not None:
            assert inp["value-choices"] == list(action.choices)
    assert inputs["nprocs"]["type"] == "Number" and inputs["nprocs"]["integer"] is True
    assert inputs["high_pass"]["type"] == "Number" and inputs["high_pass"]["integer"] is False
    assert inputs["validate"]["type"] == "Flag"
    assert inputs["bids_dir"]["type"] == "File"
    assert inputs["participant_label"]["list"] is True


def _render(desc: dict, invocation: dict) -> list[str]:
    """Substitute an invocation into the command line the way bosh does."""
    command = desc["command-line"]
    for inp in desc["inputs"]:
        value = invocation.get(inp["id"], inp.get("default-value"))
        if value is None or value is False:
            text = ""
        elif inp["type"] == "Flag":
            text = inp["command-line-flag"]
        else:
            values = value if inp.get("list") else [value]
            text = inp.get("list-separator", " ").join(shlex.quote(str(v)) for v in values)
            if "command-line-flag" in inp:
                text = f"{inp['command-line-flag']} {text}"
        command = command.replace(inp["value-key"], text)
    return shlex.split(command)


def test_rendered_invocation_parses_back(tmp_path):
    """A command line built from the descriptor is accepted by msica with the same values."""
    bids = tmp_path / "bids"
    bids.mkdir()
    templates = [tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz"]
    for path in templates:
        path.write_bytes(b"")
    desc = boutiques_descriptor()
    argv = _render(desc, {
        "bids_dir": bids, "output_dir": tmp_path / "out", "analysis_level": "participant",
        "participant_label": ["01", "sub-02"], "templates": templates, "nprocs": 3,
        "high_pass": 0.02, "save_denoised": True, "plugin": "Linear", "work_dir": tmp_path / "w",
    })
    assert argv[0] == "msica"
    settings = parse_args(argv[1:])
    assert settings.participant_label == ("01", "02")
    assert tuple(map(str, settings.templates)) == tuple(map(str, templates))
    assert settings.nprocs == 3 and settings.high_pass == 0.02
    assert settings.save_denoised is True and settings.plugin == "Linear"
    assert settings.denoise_strategy == "simple"  # default-value substituted


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
