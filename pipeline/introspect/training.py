"""A plain training loop that records gradient spectra as it goes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipeline._docs import fill_doc
from pipeline._validation import (
    check_in_allowed,
    check_int,
    check_random_state,
    check_type,
    resolve_device,
)
from pipeline.exceptions import InputDataError
from pipeline.introspect.recorder import SpectrumRecorder

__all__ = ["IntrospectionResult", "train_with_introspection"]

LOGGER = logging.getLogger("msica.introspect")

_OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@dataclass
class IntrospectionResult:
    """What :func:`train_with_introspection` returns.

    Attributes
    ----------
    model : torch.nn.Module
        The trained model (the object passed in, trained in place).
    history : DataFrame
        One row per epoch: ``epoch, n_steps, loss, accuracy`` (training set,
        averaged over the epoch's batches weighted by batch size).
    spectra : DataFrame
        :attr:`SpectrumRecorder.spectra`.
    summary : DataFrame
        :attr:`SpectrumRecorder.summary`.
    recorder : SpectrumRecorder
        The recorder (hooks removed); ``recorder.summary_trajectories()``
        and :func:`~pipeline.introspect.recorder.plot_spectrum_trajectories`
        work on it.
    classes : ndarray of shape (n_classes,)
        Class labels in the order of the model's logits.
    device : str
        Device used.
    """

    model: nn.Module
    history: pd.DataFrame
    spectra: pd.DataFrame
    summary: pd.DataFrame
    recorder: SpectrumRecorder
    classes: np.ndarray
    device: str


@fill_doc
def train_with_introspection(
    model: nn.Module,
    X: Any,
    y: Any,
    groups: Any = None,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    optimizer: str = "adam",
    record_every: int = 1,
    top_k: int | None = None,
    method: str = "auto",
    include_bias: bool = True,
    on_unsupported: str = "error",
    dtype: torch.dtype = torch.float32,
    device: Any = "auto",
    random_state: Any = None,
) -> IntrospectionResult:
    """Train a classifier with cross-entropy and record gradient spectra.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of ``X`` to logits ``(batch, n_classes)``, e.g.
        :class:`~pipeline.introspect.models.FNCMLP`.
    X : array-like of shape (n_samples, n_features) or (n_samples, n_volumes, n_networks)
        Inputs (FNC features or time courses).
    y : array-like of shape (n_samples,)
        Class labels (any sortable labels).
    groups : array-like of shape (n_samples,), optional
        Group of each sample (site, diagnosis...): spectra of each group's
        share of the batch gradient are recorded too.
    epochs : int, default=10
    batch_size : int, default=32
        The last batch of an epoch may be smaller.
    lr : float, default=1e-3
    optimizer : {"adam", "sgd"}, default="adam"
    record_every : int, default=1
        Record every ``record_every``-th optimisation step (step 0 first).
    top_k, method, include_bias, on_unsupported
        See :class:`~pipeline.introspect.recorder.SpectrumRecorder`.
    dtype : torch.dtype, default=torch.float32
        Dtype of the model and data during training.
    %(device)s
    %(random_state)s
        Drives the batch order (and the power iterations); the model's initial
        weights come from the model's own ``random_state``.

    Returns
    -------
    IntrospectionResult

    Raises
    ------
    ValueError
        If shapes disagree or a parameter is out of range.
    InputDataError
        If ``X`` contains NaN or infinite values or ``y`` has one class only.

    Notes
    -----
    The loss is the batch mean of the cross-entropy, so the recorded deltas
    carry the ``1 / batch_size`` factor of the mean reduction. On the CPU the
    run is deterministic given ``random_state`` and the model's initial weights.
    """
    check_type("model", model, nn.Module)
    check_in_allowed("optimizer", optimizer, list(_OPTIMIZERS))
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"'lr' must be a positive float. Got {lr!r}.")
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim not in (2, 3):
        raise ValueError(
            f"'X' must be 2-D (n_samples, n_features) or 3-D (n_samples, n_volumes, "
            f"n_networks). Got shape {Xa.shape}."
        )
    if not np.all(np.isfinite(Xa)):
        raise InputDataError(
            f"'X' contains {int(np.sum(~np.isfinite(Xa)))} NaN or infinite values; "
            "impute or drop those samples first."
        )
    ya = np.asarray(y)
    if ya.shape != (Xa.shape[0],):
        raise ValueError(f"'y' must have shape ({Xa.shape[0]},), one label per sample. Got {ya.shape}.")
    classes, codes = np.unique(ya, return_inverse=True)
    if classes.size < 2:
        raise InputDataError(f"'y' must contain at least 2 classes. Got {classes.tolist()}.")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (Xa.shape[0],):
            raise ValueError(
                f"'groups' must have shape ({Xa.shape[0]},), one label per sample. Got {groups.shape}."
            )
    dev = resolve_device(device)
    rng = check_random_state(random_state)
    model.to(device=dev, dtype=dtype)
    Xt = torch.as_tensor(Xa, dtype=dtype, device=dev)
    yt = torch.as_tensor(codes, dtype=torch.long, device=dev)
    opt = _OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    recorder = SpectrumRecorder(
        model, record_every=record_every, top_k=top_k, method=method,
        include_bias=include_bias, on_unsupported=on_unsupported, random_state=rng,
    )
    history = []
    step = 0
    n = Xa.shape[0]
    model.train()
    try:
        for epoch in range(epochs):
            order = rng.permutation(n)
            tot_loss = tot_correct = 0.0
            n_steps = 0
            for start in range(0, n, batch_size):
                idx = order[start: start + batch_size]
                idx_t = torch.as_tensor(idx, device=dev)
                xb, yb = Xt[idx_t], yt[idx_t]
                opt.zero_grad(set_to_none=True)
                with recorder.record(step, epoch=epoch, groups=None if groups is None else groups[idx]):
                    logits = model(xb)
                    loss = loss_fn(logits, yb)
                    loss.backward()
                opt.step()
                tot_loss += float(loss.detach()) * idx.size
                tot_correct += float((logits.argmax(1) == yb).sum())
                step += 1
                n_steps += 1
            history.append({"epoch": epoch, "n_steps": n_steps, "loss": tot_loss / n, "accuracy": tot_correct / n})
            LOGGER.debug("epoch %d: loss %.4f", epoch, tot_loss / n)
    finally:
        recorder.remove()
    return IntrospectionResult(
        model=model, history=pd.DataFrame(history), spectra=recorder.spectra,
        summary=recorder.summary, recorder=recorder, classes=classes, device=str(dev),
    )
