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
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.exceptions import InputDataError

__all__ = ["predict_command", "predict_participants"]

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
    from workflows.derivatives import DerivativesDataSink
    from workflows.group import collect_participant_outputs, derivatives_layout, target_tag
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
    covariates = pd.read_csv(participants, sep="\t", na_values="n/a",
                             keep_default_na=False) if participants else None
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


def predict_command(argv: Sequence[str]) -> int:
    """Entry point of ``msica predict``; returns the exit code."""
    from workflows.cli_base import MsicaParser, guarded, setup_logging

    parser = MsicaParser(prog="msica predict", description=__doc__.splitlines()[0].replace("`", ""))
    parser.add_argument("bids_dir", type=lambda p: Path(p).expanduser().absolute(),
                        help="BIDS dataset of the new participants (for participants.tsv)")
    parser.add_argument("output_dir", type=lambda p: Path(p).expanduser().absolute(),
                        help="msica derivatives of the new participants (participant level run)")
    parser.add_argument("--model", required=True, type=lambda p: Path(p).expanduser().absolute(),
                        help="saved model (group/desc-<target>_model.skops of a training run, "
                        "its .json sidecar beside it)")
    parser.add_argument("--participant-label", "--participant_label", dest="participant_label",
                        nargs="+", default=[], type=lambda s: s.removeprefix("sub-"),
                        help="participants to score, with or without 'sub-' (default: all)")
    parser.add_argument("--site-column", "--site_column", dest="site_column", default=None,
                        help="participants.tsv column of the new participants' sites, for a "
                        "harmonized model (default: 'site' when present; else all are one new "
                        "site)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging; tracebacks for errors")
    opts = parser.parse_args(argv)
    setup_logging(opts.verbose)

    def _go() -> int:
        predict_participants(opts.output_dir, opts.model,
                             participants_file=opts.bids_dir / "participants.tsv",
                             participant_label=opts.participant_label or None,
                             site_column=opts.site_column)
        return 0

    return guarded(_go, verbose=opts.verbose)
