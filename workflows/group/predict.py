"""``msica predict``: score new participants with a saved classifier (clinical batch use).

The new participants are first run through the participant level with the same
templates as the training cohort; ``msica predict BIDS_DIR OUTPUT_DIR --model
FILE`` then builds their features (FNC edges, or the connectivity kinds' covariances
of their network time courses) from ``OUTPUT_DIR``, checks the model file (a skops
file of trusted types only, its SHA-256 and versions: a model received from
another site cannot run code) and the features against the saved feature list,
and writes ``OUTPUT_DIR/group/desc-<target>scored_predictions.tsv`` with a JSON
sidecar. A model trained with ``--harmonize combat`` harmonizes each new site
from its own participants' features (no labels): score a site's participants
together.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pipeline.exceptions import InputDataError

__all__ = ["predict_participants"]

LOGGER = logging.getLogger("msica.predict")


def predict_participants(
    output_dir: Path,
    model_file: Path,
    *,
    participants_file: Path | None = None,
    participant_label: list[str] | None = None,
    site_column: str | None = None,
) -> Path:
    """Score the participants whose derivatives are in ``output_dir``; return the table path.

    Raises
    ------
    FileNotFoundError
        If the model, its sidecar or the participant derivatives are missing.
    InputDataError
        If the features or software versions do not match the saved model.
    """
    from pipeline.classify.persistence import load_model, predict_table
    from workflows.bids.sink import DerivativesDataSink
    from workflows.bids.derivatives import collect_participant_outputs, derivatives_layout
    from workflows.bids.naming import target_tag
    from workflows.bids.participants import read_participants
    from workflows.interfaces.classify import read_network_covariances
    from workflows.interfaces.features import read_fnc_features

    model, meta = load_model(model_file)
    layout = derivatives_layout(output_dir)
    relmats = collect_participant_outputs(layout, participant_label=participant_label,
                                          suffix="relmat", desc="multiscale", extension=".tsv")
    participants = str(participants_file) if participants_file and Path(
        participants_file).is_file() else None
    if meta.get("connectivity", ["fnc"]) == ["fnc"]:
        table, _ = read_fnc_features(relmats, participants)
    else:
        table = read_network_covariances(
            collect_participant_outputs(layout, participant_label=participant_label,
                                        suffix="timeseries", desc="ica", extension=".tsv"),
            relmats)
    covariates = read_participants(participants, numeric=[
        *meta.get("protect", []), *meta.get("confounds", [])]) if participants else None
    if site_column is None and covariates is not None and "site" in covariates:
        site_column = "site"
    try:
        scored = predict_table(model, meta, table, covariates,
                               site_column=site_column if covariates is not None else None)
    except ValueError as exc:
        raise InputDataError(f"{model_file}: {exc}") from exc
    target = target_tag(meta["target"])
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "predictions.tsv"
        scored.to_csv(tsv, sep="\t", na_rep="n/a")
        sink = DerivativesDataSink(
            base_directory=str(output_dir), in_file=str(tsv), desc=f"{target}scored",
            suffix="predictions", extension=".tsv", sources=[str(model_file), *relmats],
            meta_dict={"Model": str(model_file), "Target": meta["target"],
                       "TrainingDataSHA256": meta.get("training_data_sha256"),
                       "ModelSHA256": meta.get("model_sha256"),
                       "Harmonization": meta.get("harmonize", "none"),
                       "NewSites": meta.get("new_sites"),
                       "NumberOfParticipants": len(scored)})
        out_file = sink.run().outputs.out_file
    LOGGER.info("Scored %d participant(s) for %s: %s", len(scored), meta["target"], out_file)
    return Path(out_file)
