"""Saved classifiers: joblib model plus JSON metadata, and guarded prediction.

A model is saved next to a JSON sidecar (same stem) holding the target, the
classes, the ordered feature list, the confounds and their categories, the
msica and scikit-learn versions and a SHA-256 of the training data. Loading
and predicting refuse, with a ``ValueError``, features or versions that do not
match what the model was trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn

from pipeline import __version__
from pipeline.classify.confounds import encode_confounds

__all__ = ["data_hash", "load_model", "predict_table", "save_model"]

LOGGER = logging.getLogger("msica.classify")


def data_hash(X, y) -> str:
    """SHA-256 of the feature matrix bytes (float64, C order) and the labels.

    Examples
    --------
    >>> len(data_hash([[1.0, 2.0]], ["a"]))
    64
    """
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(X, dtype=np.float64)).tobytes())
    digest.update("\x1f".join(map(str, np.asarray(y).tolist())).encode())
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_model(estimator, path, *, feature_names, target: str, X, y, confounds=(),
               confound_categories=None, extra: dict | None = None) -> dict:
    """Save a fitted classifier (joblib) and its JSON metadata.

    Parameters
    ----------
    estimator : fitted classifier
        Refitted on all the data (e.g. a :class:`FastSearchClassifier`).
    path : str or Path
        Model file, ending in ``.joblib``; the sidecar is ``<stem>.json``.
    feature_names : sequence of str
        Feature columns, in the order of the model's input (after confounds).
    target : str
    X, y : array-like
        Training data (confound columns included), for the data hash.
    confounds : sequence of str
        Confound columns of the participants table, in order.
    confound_categories : dict or None
        Categories of categorical confounds (from :func:`encode_confounds`).
    extra : dict or None
        More metadata (e.g. cross-validated metrics, chosen parameters).

    Returns
    -------
    dict
        The metadata written.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.joblib``.
    """
    path = Path(path)
    if path.suffix != ".joblib":
        raise ValueError(f"'path' must end in '.joblib'. Got {str(path)!r}.")
    meta = {
        "target": target,
        "classes": [str(c) for c in getattr(estimator, "classes_", [])],
        "feature_names": [str(f) for f in feature_names],
        "confounds": list(confounds),
        "confound_categories": {k: list(map(str, v))
                                for k, v in (confound_categories or {}).items()},
        "msica_version": __version__,
        "sklearn_version": sklearn.__version__,
        "training_data_sha256": data_hash(X, y),
        "n_training_samples": int(np.asarray(X).shape[0]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "estimator": type(estimator).__name__,
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".joblib.tmp")
    joblib.dump(estimator, tmp)
    tmp.replace(path)
    _sidecar(path).write_text(json.dumps(meta, indent=2, default=_json_default))
    return meta


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def load_model(path, *, allow_version_mismatch: bool = False):
    """Load a saved classifier and its metadata.

    Parameters
    ----------
    path : str or Path
        The ``.joblib`` file written by :func:`save_model`.
    allow_version_mismatch : bool, default=False
        Load a model saved by another msica or scikit-learn version (logged).

    Returns
    -------
    estimator, dict

    Raises
    ------
    FileNotFoundError
        If the model or its sidecar is missing.
    ValueError
        If the model was saved by a different msica or scikit-learn version.
    """
    path = Path(path)
    for p in (path, _sidecar(path)):
        if not p.is_file():
            raise FileNotFoundError(f"saved model file {str(p)!r} not found. Point to the "
                                    ".joblib written by save_model (its .json sidecar next to it).")
    meta = json.loads(_sidecar(path).read_text())
    for key, current in (("msica_version", __version__), ("sklearn_version", sklearn.__version__)):
        if meta.get(key) != current:
            message = (f"model {path.name} was saved with {key}={meta.get(key)!r} but this is "
                       f"{current!r}. Refit the model with this version, or pass "
                       "allow_version_mismatch=True to load it anyway.")
            if not allow_version_mismatch:
                raise ValueError(message)
            LOGGER.warning(message)
    return joblib.load(path), meta


def predict_table(model, metadata: dict, features: pd.DataFrame,
                  participants: pd.DataFrame | None = None) -> pd.DataFrame:
    """Predict new participants from a feature table with the saved feature list.

    Parameters
    ----------
    model : fitted classifier
    metadata : dict
        From :func:`load_model`.
    features : pandas.DataFrame
        Indexed by participant_id; must hold every saved feature column (extra
        columns, e.g. covariates, are ignored; order does not matter).
    participants : pandas.DataFrame or None
        Needed when the model uses confounds (participant_id column or index).

    Returns
    -------
    pandas.DataFrame
        Index participant_id; ``prediction`` and ``proba_<class>`` columns.

    Raises
    ------
    ValueError
        If saved features are missing from ``features``, or confounds are needed
        and ``participants`` is missing or lacks rows.
    """
    names = metadata["feature_names"]
    missing = [f for f in names if f not in features.columns]
    if missing:
        raise ValueError(
            f"features do not match the saved model: {len(missing)} of its {len(names)} feature "
            f"columns are missing (first: {missing[:5]}). Compute the same features (same "
            "scales and networks) or retrain the model."
        )
    X = features[names].to_numpy(dtype=np.float64)
    confounds = metadata.get("confounds", [])
    if confounds:
        if participants is None:
            raise ValueError(f"the saved model regresses out confounds {confounds}; pass "
                             "'participants' with those columns.")
        table = participants.set_index("participant_id") if "participant_id" in \
            participants.columns else participants
        lacking = features.index.difference(table.index)
        if len(lacking):
            raise ValueError(f"'participants' lacks rows for {len(lacking)} participants "
                             f"(first: {lacking[:5].tolist()}). Add them.")
        design, _ = encode_confounds(table.loc[features.index], confounds,
                                     categories=metadata.get("confound_categories") or None)
        X = np.hstack([design.to_numpy(dtype=np.float64), X])
    out = pd.DataFrame({"prediction": model.predict(X)}, index=features.index)
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        for j, c in enumerate(model.classes_):
            out[f"proba_{c}"] = proba[:, j]
    return out
