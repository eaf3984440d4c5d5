"""What msica's Nipype interfaces share: a base class that writes tables and common traits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

__all__ = ["MetaOutputSpec", "ParticipantsInputSpec", "PipelineInterface", "given"]


def given(value: Any) -> Any:
    """A Nipype input's value, or None where it is undefined.

    Examples
    --------
    >>> from nipype.interfaces.base import Undefined
    >>> given(Undefined) is None, given(3)
    (True, 3)
    """
    return value if isdefined(value) else None


class ParticipantsInputSpec(BaseInterfaceInputSpec):
    """Inputs of an interface that may join participants.tsv to its table."""

    participants_file = File(exists=True, desc="participants.tsv to join")


class MetaOutputSpec(TraitedSpec):
    """Outputs of an interface whose files have a JSON sidecar."""

    meta = traits.Dict(desc="sidecar content")


class PipelineInterface(SimpleInterface):
    """A :class:`~nipype.interfaces.base.SimpleInterface` that writes its tables in the node's folder.

    The subclasses read their inputs, call :mod:`pipeline`, write what it returns
    with :meth:`_write_table` and :meth:`_write_figure`, and put the rest of
    their outputs in ``self._results``.
    """

    def _write_table(self, runtime, frame: pd.DataFrame, name: str, key: str | None = None, *,
                     index: bool = False) -> str:
        """Write ``frame`` as the TSV ``name`` in ``runtime.cwd`` (missing values ``n/a``).

        Parameters
        ----------
        runtime : nipype.interfaces.base.support.Bunch
            The runtime of ``_run_interface``.
        frame : pandas.DataFrame
            The table.
        name : str
            File name in the node's folder.
        key : str, optional
            Output the path is given to.
        index : bool
            Write the frame's index as the first column.

        Returns
        -------
        str
            The path written.
        """
        path = str(Path(runtime.cwd) / name)
        frame.to_csv(path, sep="\t", index=index, na_rep="n/a")
        if key is not None:
            self._results[key] = path
        return path

    def _write_figure(self, runtime, figure, name: str, key: str) -> None:
        """Save a matplotlib ``figure`` as the SVG ``name`` in ``runtime.cwd``, given to output ``key``."""
        from workflows.reports.figures import savefig_reproducible

        path = Path(runtime.cwd) / name
        savefig_reproducible(figure, path, format="svg")
        self._results[key] = str(path)
