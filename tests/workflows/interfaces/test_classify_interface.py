"""ClassifyTarget: what it reads from participants.tsv and records for ``msica predict``."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pandas as pd

from pipeline.classify.persistence import load_model, predict_table
from pipeline.fnc.names import edge_name
from workflows.bids.participants import read_participants
from workflows.interfaces.classify import ClassifyTarget

RANDOM_STATE = 0


def test_sites_and_covariates_are_read_as_written(tmp_path):
    """participants.tsv is read by the one reader: site codes such as ``01`` stay as written
    (the model records the sites ``msica predict`` will read), numeric confounds are numbers."""
    rng = np.random.default_rng(RANDOM_STATE)
    n = 48
    ids = [f"sub-{i:02d}" for i in range(1, n + 1)]
    diagnosis = np.array(["patient", "control"] * (n // 2))
    participants = pd.DataFrame({"participant_id": ids, "diagnosis": diagnosis,
                                 "site": ["01"] * (n // 2) + ["02"] * (n // 2),
                                 "age": rng.integers(20, 60, n)})
    participants.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    edges = [edge_name(f"s4-N{a}", f"s4-N{b}") for a, b in ((1, 2), (1, 3), (2, 3), (3, 4))]
    features = pd.DataFrame(rng.normal(0, 0.2, (n, len(edges))), index=pd.Index(ids, name=
                            "participant_id"), columns=edges)
    features[edges[0]] += np.where(diagnosis == "patient", 0.6, 0.0)  # a planted effect
    features.to_csv(tmp_path / "features.tsv", sep="\t")
    node = ClassifyTarget(features_file=str(tmp_path / "features.tsv"),
                          participants_file=str(tmp_path / "participants.tsv"),
                          target="diagnosis", confounds=["age"], harmonize="combat",
                          n_permutations=0, random_state=RANDOM_STATE)
    with contextlib.chdir(tmp_path):  # the interface writes to the working directory
        result = node.run()
    assert result.outputs.model_meta["training_sites"] == ["01", "02"]
    sites = pd.read_csv(result.outputs.site_metrics_file, sep="\t", dtype={"site": str})
    assert sorted(sites["site"]) == ["01", "02"]
    assert result.outputs.meta["Confounds"] == ["age"]
    assert json.dumps(result.outputs.meta)  # the sidecar content is plain JSON
    # msica predict reads the same table the same way: the training sites are seen again
    model, meta = load_model(result.outputs.model_file)
    scored = predict_table(model, meta, features, read_participants(
        tmp_path / "participants.tsv", numeric=["age"]), site_column="site")
    assert scored["site_seen_in_training"].all()
