"""Progress of a run: a redrawn bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys

from workflows.execution.crashes import PARTICIPANT_OF_CRASH

__all__ = ["Progress"]

LOGGER = logging.getLogger("msica.run")

class Progress:
    """Nipype ``status_callback``: a progress bar on a terminal, log lines otherwise.

    Nodes are counted per participant (``sub-<label>``, from the ``sub_<label>_wf``
    in their name) or, for nodes of no participant, per workflow. On an
    interactive stderr one line is redrawn; otherwise each finished or failed
    participant (and, for workflows of no participant, each node) is logged once.
    """

    def __init__(self, workflow, stream=None) -> None:
        from nipype.interfaces.utility import IdentityInterface

        self._stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._name = workflow.name
        self._total: dict[str, int] = {}
        for name in workflow.list_node_names():  # Nipype drops identity nodes before running
            if not isinstance(workflow.get_node(name).interface, IdentityInterface):
                unit = self._unit(name)
                self._total[unit] = self._total.get(unit, 0) + 1
        self._done = dict.fromkeys(self._total, 0)
        self._failed: set[str] = set()

    def _unit(self, node_name: str) -> str:
        found = PARTICIPANT_OF_CRASH.search(node_name)
        return f"sub-{found.group('label')}" if found else self._name

    def __call__(self, node, status: str) -> None:
        if status not in ("end", "exception"):
            return  # 'start'
        unit = self._unit(node.fullname)
        self._total.setdefault(unit, 0)
        self._done.setdefault(unit, 0)
        node_name = node.fullname.removeprefix(f"{self._name}.")
        if status == "exception":
            self._failed.add(unit)
            message = f"{unit}: node {node_name} failed"
        else:
            self._done[unit] += 1
            message = f"{unit}: {node_name} done ({self._done[unit]}/{self._total[unit]})"
        if self._tty:
            self._draw()
        elif status == "exception" or unit == self._name:
            LOGGER.info("%s", message)
        elif self._done[unit] == self._total[unit]:
            LOGGER.info("%s finished (%d nodes); %d of %d participants done.", unit,
                        self._total[unit], *self._participants_done())
        else:
            LOGGER.debug("%s", message)

    def _participants_done(self) -> tuple[int, int]:
        """(participants whose nodes all finished, participants)."""
        units = [u for u in self._total if u.startswith("sub-")]
        return sum(self._done[u] >= self._total[u] for u in units), len(units)

    def _draw(self) -> None:
        done, total = sum(self._done.values()), max(sum(self._total.values()), 1)
        filled = min(30, 30 * done // total)
        line = f"\r\x1b[K{self._name} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} nodes, "
        finished, participants = self._participants_done()
        if participants:
            line += f"{finished}/{participants} participants done, "
        line += f"{len(self._failed)} failed"
        self._stream.write(line)
        self._stream.flush()

    def close(self) -> None:
        """End the progress line (terminal only)."""
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
