"""A Boutiques descriptor of the ``msica`` command line, generated from its argparse parser.

`Boutiques <https://boutiques.github.io>`_ describes a command-line tool in
JSON (inputs, command-line template, container image, outputs) so that
platforms such as CBRAIN can run it. The descriptor is generated from
:func:`workflows.cli.bids_app.build_parser` so it cannot drift from the real command
line; the shipped copy is ``bids_templates/msica.boutiques.json``
(``msica --boutiques bids_templates/msica.boutiques.json`` regenerates it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

__all__ = ["CONTAINER_IMAGE", "boutiques_command", "boutiques_descriptor", "write_boutiques"]

#: Docker image the descriptor points to (``{version}`` is msica's version).
CONTAINER_IMAGE = "msica/msica:{version}"

_SKIP = (argparse._HelpAction, argparse._VersionAction)
_FLAG_ACTIONS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._CountAction)
_NUMBER_TYPES = {"positive_int": (True, 1), "positive_float": (False, 0), "int": (True, None),
                 "float": (False, None)}

_OUTPUTS = [
    ("dataset_description", "Dataset description", "[OUTPUT_DIR]/dataset_description.json",
     False, False, "BIDS derivatives dataset_description.json"),
    ("participant_qc", "Participant denoising QC",
     "[OUTPUT_DIR]/sub-*/func/sub-*_desc-denoise_qc.tsv", True, True,
     "Denoising quality control per run (participant level)"),
    ("participant_components", "Participant network maps",
     "[OUTPUT_DIR]/sub-*/func/sub-*_desc-ica_components.nii.gz", True, True,
     "Back-reconstructed network maps per scale (participant level)"),
    ("participant_timeseries", "Participant network time courses",
     "[OUTPUT_DIR]/sub-*/func/sub-*_desc-ica_timeseries.tsv", True, True,
     "Network time courses per scale (participant level)"),
    ("participant_relmat", "Participant multi-scale FNC",
     "[OUTPUT_DIR]/sub-*/func/sub-*_desc-multiscale_relmat.tsv", True, True,
     "Multi-scale functional network connectivity (participant level)"),
    ("group_qc", "Group QC table", "[OUTPUT_DIR]/group/desc-denoise_qc.tsv", False, True,
     "Denoising QC of every participant with phenotypes (group level)"),
    ("logs", "Logs", "[OUTPUT_DIR]/logs", False, True,
     "Run settings (TOML), citation boilerplate and SLURM logs"),
]


def _type_name(action: argparse.Action) -> str:
    func = action.type
    if isinstance(func, partial):
        func = func.func
    return getattr(func, "__name__", "")


def _input(action: argparse.Action) -> dict[str, Any]:
    """One Boutiques input for one argparse action."""
    key = action.dest.upper()
    entry: dict[str, Any] = {
        "id": action.dest,
        "name": action.dest.replace("_", " ").capitalize(),
        "value-key": f"[{key}]",
        "optional": not (action.required or not action.option_strings),
    }
    if action.help and action.help != argparse.SUPPRESS:
        entry["description"] = action.help
    if isinstance(action, argparse.BooleanOptionalAction):
        # --detrend / --no-detrend: the chosen spelling is the value (absent: the default)
        entry.update(type="String", optional=True, **{"value-choices": action.option_strings})
        return entry
    if action.option_strings:
        longs = [s for s in action.option_strings if s.startswith("--")]
        entry["command-line-flag"] = (longs or action.option_strings)[0]
    if isinstance(action, _FLAG_ACTIONS):
        entry["type"] = "Flag"
        entry["optional"] = True
        return entry
    type_name = _type_name(action)
    if type_name in _NUMBER_TYPES:
        integer, minimum = _NUMBER_TYPES[type_name]
        entry["type"] = "Number"
        entry["integer"] = integer
        if minimum is not None:
            entry["minimum"] = minimum
            entry["exclusive-minimum"] = not integer
    elif type_name in ("existing_dir", "existing_file", "json_file") or action.dest.endswith(
            "_dir"):
        entry["type"] = "File"
    else:
        entry["type"] = "String"
    if action.choices is not None:
        entry["value-choices"] = list(action.choices)
    if isinstance(action, argparse._AppendAction):
        # a repeated option: --template a --template b
        entry["list"] = True
        entry["list-separator"] = f" {entry['command-line-flag']} "
    elif action.nargs in ("+", "*"):
        entry["list"] = True
        if action.nargs == "+":
            entry["min-list-entries"] = 1
    default = action.default
    if (isinstance(default, (str, int, float)) and not isinstance(default, bool)
            and default != argparse.SUPPRESS):
        entry["default-value"] = default
    return entry


def boutiques_descriptor() -> dict[str, Any]:
    """Return the Boutiques (schema 0.5) descriptor of ``msica BIDS_DIR OUTPUT_DIR LEVEL``.

    One input per argparse action of the parser (help and version left out):
    options become ``String``/``File``/``Number``/``Flag`` inputs with their
    long flag, choices, list-ness and scalar defaults; argparse groups become
    Boutiques groups (mutually exclusive when argparse's are). Machine-dependent
    defaults (absolute paths) are left out so that the descriptor is the same on
    every machine.

    Returns
    -------
    dict
        JSON-serialisable descriptor.

    Examples
    --------
    >>> desc = boutiques_descriptor()
    >>> desc["schema-version"], desc["command-line"].split()[:4]
    ('0.5', ['msica', '[BIDS_DIR]', '[OUTPUT_DIR]', '[ANALYSIS_LEVEL]'])
    """
    from pipeline import __version__
    from workflows.cli.bids_app import build_parser
    from workflows.exit_codes import ExitCode

    parser = build_parser()
    inputs, groups = [], []
    exclusive = [{a.dest for a in g._group_actions} for g in parser._mutually_exclusive_groups]
    for group in parser._action_groups:
        members = [a for a in group._group_actions if not isinstance(a, _SKIP)]
        if not members:
            continue
        if group.title not in ("positional arguments", "options", "optional arguments"):
            groups.append({
                "id": "_".join(group.title.lower().replace(",", "").split()),
                "name": group.title,
                "members": [a.dest for a in members],
            })
            if any({a.dest for a in members} <= dests for dests in exclusive):
                groups[-1]["mutually-exclusive"] = True
    for action in parser._actions:
        if not isinstance(action, _SKIP):
            inputs.append(_input(action))
    command_line = " ".join(["msica", *(entry["value-key"] for entry in inputs)])
    descriptor: dict[str, Any] = {
        "name": "msica",
        "tool-version": __version__,
        "description": parser.description,
        "schema-version": "0.5",
        "command-line": command_line,
        "container-image": {"type": "docker", "image": CONTAINER_IMAGE.format(version=__version__),
                            "entrypoint": True},
        "inputs": inputs,
        "groups": groups,
        "output-files": [
            {"id": oid, "name": name, "description": description, "path-template": template,
             "list": is_list, "optional": optional}
            for oid, name, template, is_list, optional, description in _OUTPUTS
        ],
        "error-codes": [
            {"code": int(code), "description": code.name.replace("_", " ").lower()}
            for code in ExitCode if int(code) != 0
        ],
        "suggested-resources": {"cpu-cores": 1, "ram": 4, "walltime-estimate": 3600},
        "tags": {"domain": ["neuroinformatics", "fmri", "bids-app"]},
        "custom": {"generated-by": "workflows.cli.boutiques.boutiques_descriptor"},
    }
    return descriptor


def write_boutiques(path: str | Path) -> Path:
    """Write :func:`boutiques_descriptor` as indented JSON to ``path`` (atomically); return it."""
    from workflows.bids.atomic import atomic_write

    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(json.dumps(boutiques_descriptor(), indent=2) + "\n")
    return path


def boutiques_command(argv: Sequence[str]) -> int:
    """``msica --boutiques [PATH]``: write the descriptor to PATH, or print it when none.

    Returns
    -------
    int
        0, or 64 (usage) when more than one argument is given.
    """
    argv = list(argv)
    if len(argv) > 1:
        print("usage: msica --boutiques [PATH]", file=sys.stderr)
        return 64
    if argv:
        path = write_boutiques(argv[0])
        print(f"msica: Boutiques descriptor written to {path}")
    else:
        print(json.dumps(boutiques_descriptor(), indent=2))
    return 0
