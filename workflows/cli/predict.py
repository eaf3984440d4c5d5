"""``msica predict BIDS_DIR OUTPUT_DIR --model FILE``: score new participants with a saved model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["predict_command"]

def predict_command(argv: Sequence[str]) -> int:
    """Entry point of ``msica predict``; returns the exit code."""
    from workflows.cli.base import MsicaParser, guarded, setup_logging

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
        from workflows.group.predict import predict_participants

        predict_participants(opts.output_dir, opts.model,
                             participants_file=opts.bids_dir / "participants.tsv",
                             participant_label=opts.participant_label or None,
                             site_column=opts.site_column)
        return 0

    return guarded(_go, verbose=opts.verbose)
