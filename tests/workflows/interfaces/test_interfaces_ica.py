"""The back-reconstruction interface's messages."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.ica.backrecon import BackreconResult
from workflows.interfaces.ica import _report_convergence


def test_convergence_warning_names_run_scale_and_networks(caplog):
    est = BackreconResult(np.zeros((3, 5)), np.zeros((8, 3)),
                          converged=np.array([True, False, True]), n_iter=np.array([12, 100, 9]),
                          final_change=np.array([0.0, 2e-6, 0.0]))
    labels = pd.Series(["N1", "N2", "N3"])
    with caplog.at_level("WARNING", logger="msica.workflows"):
        _report_convergence(est, labels, "sub-04_task-rest_desc-preproc_bold.nii.gz", 3, False,
                            method="moo-icar")
        _report_convergence(est, labels, "sub-04_task-rest_desc-preproc_bold.nii.gz", 3, True,
                            method="moo-icar")
    default, gift = [r.getMessage() for r in caplog.records]
    assert default.startswith("sub-04_task-rest_desc-preproc_bold.nii.gz, scale 3: back-reconstruction "
                              "(moo-icar) did not converge for 1 of 3 networks (N2) after 100 "
                              "passes")
    assert "max_iter" not in default and "max_iter" not in gift
    assert "drop --gift-compatible" in gift


def test_no_warning_when_every_network_converged(caplog):
    est = BackreconResult(np.zeros((2, 5)), np.zeros((8, 2)), converged=np.array([True, True]),
                          n_iter=np.array([3, 4]), final_change=np.zeros(2))
    with caplog.at_level("WARNING", logger="msica.workflows"):
        _report_convergence(est, pd.Series(["a", "b"]), "run", 2, False, method="moo-icar")
    assert not caplog.records


def test_closed_form_methods_report_nothing(caplog):
    result = BackreconResult(np.zeros((2, 5)), np.zeros((8, 2)))  # converged None
    with caplog.at_level("WARNING", logger="msica.workflows"):
        _report_convergence(result, pd.Series(["a", "b"]), "run", 2, False, method="moo-icar")
    assert not caplog.records
