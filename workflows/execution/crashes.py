"""Nipype crash files read back: one failure per participant (or group node), as text too."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.exceptions import InputDataError

__all__ = ["GROUP_ICA_CRASH", "GROUP_NODE_OF_CRASH", "PARTICIPANT_OF_CRASH", "failures_from_crashfiles",
           "write_crash_text"]

#: Where a crash happened: the participant of a participant-level node ...
PARTICIPANT_OF_CRASH = re.compile(r"sub_(?P<label>[A-Za-z0-9]+)_wf")


#: ... or the node name of a group-level node (inside its concern's sub-workflow).
GROUP_NODE_OF_CRASH = re.compile(r"msica_group_wf\.(?:\w+_wf\.)*(?P<node>\w+)")


#: ... or, in data-driven mode, the node name: the group ICA or a chunk of runs'
#: back-reconstruction and FNC (whose error names the failed runs).
GROUP_ICA_CRASH = re.compile(r"msica_groupica_wf\.(?P<node>\w+)")


_ERROR_LINE = re.compile(
    r"^(?:[\w.]+\.)?(InputDataError|FileNotFoundError|ValueError|TypeError|\w+Error): (.+)$"
)


_ERROR_TYPES: dict[str, type[BaseException]] = {
    "InputDataError": InputDataError,
    "FileNotFoundError": FileNotFoundError,
    "ValueError": ValueError,
    "TypeError": TypeError,
}


def failures_from_crashfiles(crash_dir: Path, where_pattern: re.Pattern, *,
                              logs_dir: Path | None = None) -> dict[str, BaseException]:
    """Read Nipype crash files back into ``{where: exception}``.

    ``where`` is ``sub-<label>`` for participant-level nodes and the node name
    for group-level ones; the exception carries the last error line of the traceback.
    With ``logs_dir``, each crash is also written there as readable text
    (see :func:`write_crash_text`).
    """
    from nipype.utils.filemanip import loadcrash

    failures: dict[str, BaseException] = {}
    for crash_file in sorted(crash_dir.glob("crash-*.pklz")):
        crash = loadcrash(str(crash_file))
        if logs_dir is not None:
            write_crash_text(crash_file, crash, logs_dir)
        found_where = where_pattern.search(str(crash.get("node")) + " " + crash_file.name)
        if found_where is None:
            where = crash_file.name
        elif found_where.groupdict().get("label"):
            where = f"sub-{found_where.group('label')}"
        else:
            where = found_where.group("node")
        message, error_type = f"node crashed; see {crash_file}", RuntimeError
        for line in reversed("".join(crash.get("traceback", [])).splitlines()):
            found = _ERROR_LINE.match(line.strip())
            if found:
                error_type = _ERROR_TYPES.get(found.group(1), RuntimeError)
                message = found.group(2)
                break
        failures.setdefault(where, error_type(message))
    return failures


_CRASH_STAMP = re.compile(r"^crash-(?P<stamp>\d{8}-\d{6})-")


def write_crash_text(crash_file: Path, crash: dict, logs_dir: Path) -> Path:
    """Write one Nipype crash as text: ``logs/crash-<time>-<sub-label|workflow>-<node>.txt``.

    The file names the participant (or workflow), the node, the error and the
    full traceback, and the Nipype crash file it was read from; it is written atomically.
    """
    from workflows.bids.atomic import atomic_write

    node_name = str(crash.get("node"))
    parts = node_name.split(".")
    found = PARTICIPANT_OF_CRASH.search(node_name)
    if found:
        where, inner = f"sub-{found.group('label')}", parts[parts.index(found.group(0)) + 1:]
    else:
        where, inner = parts[0], parts[1:]
    stamp = _CRASH_STAMP.match(crash_file.name)
    stamp = stamp.group("stamp") if stamp else crash_file.stem
    traceback_text = "".join(crash.get("traceback", [])).rstrip()
    error = next((line.strip() for line in reversed(traceback_text.splitlines())
                  if _ERROR_LINE.match(line.strip())), "(no error line in the traceback)")
    lines = [f"participant: {where.removeprefix('sub-')}" if found else f"workflow: {where}",
             f"node: {node_name}", f"error: {error}", f"nipype crash file: {crash_file}",
             "", "traceback:", traceback_text]
    path = logs_dir / f"crash-{stamp}-{where}-{'.'.join(inner) or 'node'}.txt"
    with atomic_write(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return path
