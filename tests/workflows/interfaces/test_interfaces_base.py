"""PipelineInterface: how the interfaces write their tables and figures into the node's folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from nipype.interfaces.base import Bunch

from workflows.interfaces.base import (
    MetaOutputSpec,
    ParticipantsInputSpec,
    PipelineInterface,
)


class _Writer(PipelineInterface):
    input_spec = ParticipantsInputSpec
    output_spec = MetaOutputSpec


def test_write_table_is_a_bids_tsv_given_to_its_output(tmp_path):
    node = _Writer()
    frame = pd.DataFrame({"a": [1.0, np.nan]}, index=pd.Index(["x", "y"], name="node"))

    path = node._write_table(Bunch(cwd=str(tmp_path)), frame, "t.tsv", "out_file", index=True)

    assert path == str(tmp_path / "t.tsv")
    assert node._results == {"out_file": path}
    assert (tmp_path / "t.tsv").read_text() == "node\ta\nx\t1.0\ny\tn/a\n"


def test_write_table_without_key_or_index(tmp_path):
    node = _Writer()

    path = node._write_table(Bunch(cwd=str(tmp_path)), pd.DataFrame({"a": [1]}), "t.tsv")

    assert node._results == {}
    assert Path(path).read_text() == "a\n1\n"


def test_write_figure_is_a_reproducible_svg(tmp_path):
    node = _Writer()
    figure = Figure()
    figure.add_subplot().plot([0, 1])

    node._write_figure(Bunch(cwd=str(tmp_path)), figure, "f.svg", "figure_file")

    svg = (tmp_path / "f.svg").read_text()
    assert node._results == {"figure_file": str(tmp_path / "f.svg")}
    assert svg.lstrip().startswith("<?xml") and "<dc:date>" not in svg
