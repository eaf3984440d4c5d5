"""The ``msica`` command line (BIDS-App conventions): one module per command.

``msica BIDS_DIR OUTPUT_DIR {participant,group} [options]`` runs a level
(:mod:`.bids_app`); ``msica simulate``/``msica demo`` (:mod:`.simulate`),
``msica submit`` (:mod:`.submit`), ``msica predict`` (:mod:`.predict`),
``msica sites`` (:mod:`.sites`) and ``msica --boutiques`` (:mod:`.boutiques`) are the
other commands. Every parser derives from :class:`.base.MsicaParser` and every
command runs through :func:`.base.guarded`: the same exit codes everywhere (0 success,
1 error, 16 BIDS validation failed, 64 usage error, 65 bad input data, 66 missing
input, 73 output not writable).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main", "run"]

#: ``msica <command> ...``: the module and function of each command other than a level.
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("workflows.cli.simulate", "simulate_command"),
    "demo": ("workflows.cli.simulate", "demo_command"),
    "submit": ("workflows.cli.submit", "submit_command"),
    "predict": ("workflows.cli.predict", "predict_command"),
    "sites": ("workflows.cli.sites", "sites_command"),
    "--boutiques": ("workflows.cli.boutiques", "boutiques_command"),
}


def run(argv: Sequence[str] | None = None) -> int:
    """Run msica with command-line arguments ``argv``; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    module, function = COMMANDS.get(argv[0] if argv else "",
                                    ("workflows.cli.bids_app", "bids_app_command"))
    if argv and argv[0] in COMMANDS:
        argv = argv[1:]
    return getattr(importlib.import_module(module), function)(argv)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
