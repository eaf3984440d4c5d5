"""Saved classifiers that are safe to share: skops files, JSON metadata, guarded prediction.

A model is saved with skops' persistence format (``.skops``: a zip of JSON
and arrays, loaded without unpickling) next to a JSON sidecar (same stem)
holding the target, the classes, the ordered feature list, the covariates and
their categories, the harmonization and its training sites, the msica,
scikit-learn and skops versions, a SHA-256 of the training data and a SHA-256
of the model file itself.

Loading refuses, with an :class:`~pipeline.exceptions.InputDataError`, a
model file that is not a skops file (a pickle or joblib file can run code when
loaded), that holds any type outside :data:`TRUSTED_TYPES` (checked before
anything is built), that does not match the SHA-256 in its sidecar, or that
was saved by another version; prediction refuses features that do not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn

from pipeline import __version__
from pipeline.classify.confounds import encode_confounds
from pipeline.exceptions import InputDataError

__all__ = ["MODEL_EXTENSION", "TRUSTED_TYPES", "data_hash", "file_hash", "load_model",
           "predict_table", "save_model"]

LOGGER = logging.getLogger("msica.classify")

#: Extension of saved models.
MODEL_EXTENSION = ".skops"

#: Types a model file may hold besides those skops trusts (numpy, scikit-learn's public
#: estimators): msica's own, and the parts of a fitted CalibratedClassifierCV (plain
#: scikit-learn classes holding arrays; skops does not list private classes as trusted).
TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "pipeline.classify.confounds.ConfoundRegressor",
    "pipeline.classify.connectivity.ConnectivityFeatures",
    "pipeline.classify.harmonize.ComBat",
    "pipeline.classify.models.TorchMLPClassifier",
    "pipeline.classify.preprocess.FoldPreprocessor",
    "pipeline.classify.search.FastSearchClassifier",
)


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


def file_hash(path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _skops_version() -> str:
    import skops

    return skops.__version__


def save_model(estimator, path, *, feature_names, target: str, X, y, confounds=(), protect=(),
               confound_categories=None, sites=None, extra: dict | None = None) -> dict:
    """Save a fitted classifier (skops) and its JSON metadata.

    Parameters
    ----------
    estimator : fitted classifier
        Refitted on all the data (e.g. a :class:`FastSearchClassifier`).
    path : str or Path
        Model file, ending in ``.skops``; the sidecar is ``<stem>.json``.
    feature_names : sequence of str
        Feature columns, in the order of the model's input (after the covariates).
    target : str
    X, y : array-like
        Training data (covariate columns included), for the data hash.
    confounds, protect : sequence of str
        Columns regressed out / protected by harmonization, in order.
    confound_categories : dict or None
        Categories of categorical covariates (from :func:`encode_confounds`).
    sites : array-like or None
        Training sites (recorded; new sites are harmonized from their own features).
    extra : dict or None
        More metadata (e.g. cross-validated metrics, chosen parameters).

    Returns
    -------
    dict
        The metadata written.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.skops``.
    """
    import skops.io

    path = Path(path)
    if path.suffix != MODEL_EXTENSION:
        raise ValueError(f"'path' must end in '{MODEL_EXTENSION}'. Got {str(path)!r}.")
    settings = getattr(estimator, "settings_", {})
    harmonize = settings.get("harmonize", getattr(estimator, "harmonize", "none"))
    meta = {
        "target": target,
        "classes": [str(c) for c in getattr(estimator, "classes_", [])],
        "feature_names": [str(f) for f in feature_names],
        "confounds": list(confounds),
        "protect": list(protect),
        "confound_categories": {k: list(map(str, v))
                                for k, v in (confound_categories or {}).items()},
        "kinds": None if getattr(estimator, "kinds", None) is None else list(estimator.kinds),
        "harmonize": harmonize,
        "settings": dict(settings),
        "training_sites": sorted(map(str, set(np.asarray(sites).tolist())))
        if sites is not None else [],
        "new_sites": ("sites not among training_sites are harmonized with site effects "
                      "estimated from their own features (no labels); score at least "
                      "ComBat's min_site_size participants of such a site together")
        if harmonize != "none" else "not harmonized",
        "msica_version": __version__,
        "sklearn_version": sklearn.__version__,
        "skops_version": _skops_version(),
        "training_data_sha256": data_hash(X, y),
        "n_training_samples": int(np.asarray(X).shape[0]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "estimator": type(estimator).__name__,
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    skops.io.dump(estimator, tmp)
    meta["model_sha256"] = file_hash(tmp)
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
    """Load a saved classifier and its metadata, refusing anything that could run code.

    Parameters
    ----------
    path : str or Path
        The ``.skops`` file written by :func:`save_model`.
    allow_version_mismatch : bool, default=False
        Load a model saved by another msica, scikit-learn or skops version (logged).

    Returns
    -------
    estimator, dict

    Raises
    ------
    FileNotFoundError
        If the model or its sidecar is missing.
    InputDataError
        If the file is not a skops file, holds untrusted types, does not match
        the SHA-256 of its sidecar, or was saved by another version.
    """
    import skops.io

    path = Path(path)
    for p in (path, _sidecar(path)):
        if not p.is_file():
            raise FileNotFoundError(f"saved model file {str(p)!r} not found. Point to the "
                                    f".skops written by save_model (its .json sidecar next to "
                                    "it).")
    try:
        meta = json.loads(_sidecar(path).read_text())
    except ValueError as exc:
        raise InputDataError(f"{_sidecar(path)} is not valid JSON ({exc}); use the sidecar "
                             "saved with the model.") from exc
    if not zipfile.is_zipfile(path):
        raise InputDataError(
            f"{path} is not a msica model file (a .skops file written by save_model); pickle "
            "and joblib files are refused because loading them can run code. Retrain and "
            "save the model with this version of msica."
        )
    for key, current in (("msica_version", __version__), ("sklearn_version", sklearn.__version__),
                         ("skops_version", _skops_version())):
        if meta.get(key) != current:
            message = (f"model {path.name} was saved with {key}={meta.get(key)!r} but this is "
                       f"{current!r}. Refit the model with this version, or pass "
                       "allow_version_mismatch=True to load it anyway.")
            if not allow_version_mismatch:
                raise InputDataError(message)
            LOGGER.warning(message)
    digest = file_hash(path)
    if meta.get("model_sha256") != digest:
        raise InputDataError(
            f"{path} does not match the SHA-256 recorded in {_sidecar(path).name} "
            f"({meta.get('model_sha256')!r} vs {digest!r}): the file was changed or damaged. "
            "Get both files again from the training run."
        )
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a model we wrote"
        raise InputDataError(f"{path} is not a readable skops model file ({exc}); use the "
                             "file written by save_model.") from exc
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise InputDataError(
            f"{path} holds types msica does not trust ({', '.join(refused)}); refusing to load "
            "it because building them could run code. Use a model saved by msica's "
            "save_model."
        )
    return skops.io.load(path, trusted=list(TRUSTED_TYPES)), meta


def predict_table(model, metadata: dict, features: pd.DataFrame,
                  participants: pd.DataFrame | None = None,
                  site_column: str | None = None) -> pd.DataFrame:
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
        Needed when the model uses covariates (participant_id column or index),
        and for the sites of a harmonized model.
    site_column : str or None
        Column of ``participants`` naming each participant's site, for a
        harmonized model; without it all participants are taken as one new site.

    Returns
    -------
    pandas.DataFrame
        Index participant_id; ``prediction``, ``proba_<class>`` and, for a
        harmonized model, ``site`` and ``site_seen_in_training`` columns.

    Raises
    ------
    ValueError
        If saved features are missing from ``features``, or covariates are
        needed and ``participants`` is missing or lacks rows.
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
    covariates = [*metadata.get("protect", []), *metadata.get("confounds", [])]
    table = None
    if covariates or site_column:
        if participants is None:
            raise ValueError(f"the saved model uses participant covariates {covariates} or "
                             "sites; pass 'participants' with those columns.")
        table = participants.set_index("participant_id") if "participant_id" in \
            participants.columns else participants
        lacking = features.index.difference(table.index)
        if len(lacking):
            raise ValueError(f"'participants' lacks rows for {len(lacking)} participants "
                             f"(first: {lacking[:5].tolist()}). Add them.")
    if covariates:
        categories = metadata.get("confound_categories") or None
        blocks = [encode_confounds(table.loc[features.index], columns, categories=categories)[0]
                  for columns in (metadata.get("protect", []), metadata.get("confounds", []))]
        X = np.hstack([*(b.to_numpy(dtype=np.float64) for b in blocks), X])
    harmonized = metadata.get("harmonize", "none") != "none"
    sites = None
    if harmonized:
        sites = (table.loc[features.index, site_column].astype(str).to_numpy() if site_column
                 else np.full(len(features), "new site", dtype=object))
    kwargs = {"groups": sites} if harmonized else {}
    out = pd.DataFrame({"prediction": model.predict(X, **kwargs)}, index=features.index)
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X, **kwargs)
        for j, c in enumerate(model.classes_):
            out[f"proba_{c}"] = proba[:, j]
    if harmonized:
        out["site"] = sites
        out["site_seen_in_training"] = np.isin(sites, metadata.get("training_sites", []))
    return out
