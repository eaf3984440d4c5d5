"""The docs stay true to the code: every option, exit code and output name is documented.

The options are read from the real argparse parsers of every command (each command is
started with ``--help`` and its parser is caught when it parses), so a new option that
is not in ``docs/usage.md`` fails here. No workflow runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workflows.cli import COMMANDS, run
from workflows.cli.base import MsicaParser
from workflows.exit_codes import ExitCode

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = Path(__file__).resolve().parents[1] / "README.md"

#: ``msica <argv>`` of every command with a parser (``--boutiques`` has none).
COMMAND_ARGV = {
    "msica": [],
    "msica simulate": ["simulate"],
    "msica demo": ["demo"],
    "msica submit": ["submit"],
    "msica submit --finalize": ["submit", "--finalize"],
    "msica predict": ["predict"],
    "msica sites": ["sites"],
}


class _Caught(BaseException):
    """Raised instead of parsing, carrying the parser (BaseException: no command catches it)."""

    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def _parser_of(argv: list[str], monkeypatch) -> MsicaParser:
    def catch(self, args=None, namespace=None):
        raise _Caught(self)

    monkeypatch.setattr(MsicaParser, "parse_args", catch)
    with pytest.raises(_Caught) as caught:
        run([*argv, "--help"])
    return caught.value.parser


def _documented_options(parser) -> list[str]:
    """Option strings a reader needs: every spelling but the underscore twin of a hyphen one."""
    options = []
    for action in parser._actions:
        for option in action.option_strings:
            hyphen = "--" + option.removeprefix("--").replace("_", "-")
            if option != hyphen and hyphen in action.option_strings:
                continue
            options.append(option)
    return options


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


@pytest.fixture(scope="module")
def usage() -> str:
    return (DOCS / "usage.md").read_text(encoding="utf-8")


def test_every_command_is_covered():
    """A new command added to the dispatcher needs an entry here (and in usage.md)."""
    assert {argv[0] for argv in COMMAND_ARGV.values() if argv} | {"--boutiques"} == set(COMMANDS)


def _section(usage: str, command: str) -> str:
    """The ``## `msica <command>` ...`` section of a subcommand; the whole page for ``msica``."""
    if command == "msica":
        return usage
    name = " ".join(command.split()[:2])  # "msica submit --finalize" -> its submit section
    sections = [part for part in usage.split("\n## ") if f"`{name}`" in part.split("\n", 1)[0]]
    assert sections, f"docs/usage.md has no section titled `{name}`"
    return "\n".join(sections)


@pytest.mark.parametrize("command", list(COMMAND_ARGV))
def test_usage_mentions_every_option(command, usage, monkeypatch):
    parser = _parser_of(COMMAND_ARGV[command], monkeypatch)
    options = _documented_options(parser)
    assert options, f"no options found for {command}"
    text = _section(usage, command)
    missing = [option for option in options if not _mentions(text, option)]
    assert not missing, f"the {command} section of docs/usage.md does not mention {missing}"


def test_usage_mentions_every_command(usage):
    for command in [*COMMAND_ARGV, "msica --boutiques"]:
        assert f"`{command}" in usage, command


def test_usage_lists_every_exit_code(usage):
    section = usage.split("## Exit codes", 1)[1]
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", section, re.MULTILINE), code


def test_outputs_name_every_derivative():
    """Every desc/suffix pair the sinks write is in outputs.md (``<target>`` for a target)."""
    from workflows.group.outputs import group_outputs

    text = (DOCS / "outputs.md").read_text(encoding="utf-8")
    target = "diagnosis"
    names = {"desc-denoise_qc", "desc-denoised_bold", "desc-ica_components",
             "desc-ica_timeseries", "desc-gift_components", "desc-multiscale_relmat",
             "desc-dfnc_timeseries", "desc-groupica_components", "desc-groupica_labels"}
    for concern in ("qc", "fnc_table", "timecourse_table", "dfnc_states", "classify",
                    "introspect"):
        for _, entities in group_outputs(concern, target).values():
            desc = entities["desc"].replace(target, "<target>")
            names.add(f"desc-{desc}_{entities['suffix']}")
    missing = sorted(name for name in names if name not in text)
    assert not missing, f"docs/outputs.md does not name {missing}"


def test_methods_name_every_registry_entry():
    """Back-reconstruction methods and FNC measures of the registries are in methods.md."""
    from pipeline.fnc.static import FNC_MEASURES
    from pipeline.ica.backrecon import BACKRECON_METHODS

    text = (DOCS / "methods.md").read_text(encoding="utf-8")
    for name in [*BACKRECON_METHODS, *FNC_MEASURES]:
        assert f"`{name}`" in text, name


def test_readme_links_every_doc():
    readme = README.read_text(encoding="utf-8")
    for doc in sorted(DOCS.glob("*.md")):
        assert f"(docs/{doc.name})" in readme, doc.name


def test_relative_links_in_docs_resolve():
    for doc in [README, *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
