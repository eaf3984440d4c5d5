"""Record per-layer, per-group gradient spectra during training.

:class:`SpectrumRecorder` wraps a :class:`~pipeline.introspect.hooks.GradientCapture`
and, every ``record_every`` steps, turns the captured activations and deltas
into singular values of each layer's batch gradient and of each group's share
of it (:mod:`pipeline.introspect.linalg`). Results are kept in two tidy tables:

``spectra``
    one row per singular value: ``step, epoch, layer, parameter, group, index,
    singular_value``;
``summary``
    one row per ``(step, layer, parameter, group)``: ``n_samples, n_rows,
    effective_rank, numerical_rank, rank_bound, top_singular_value,
    frobenius_norm, method`` (the route used: ``"qr"``, ``"gram"``,
    ``"direct"`` or ``"power"``).

The group ``"all"`` is the whole batch gradient.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
    derive_seeds,
)
from pipeline.introspect.hooks import GradientCapture
from pipeline.introspect.linalg import (
    METHODS,
    batch_and_group_svdvals,
    choose_method,
    effective_rank,
    gradient_svdvals,
    numerical_rank,
    top_singular_values,
)

__all__ = ["ALL_GROUP", "SpectrumRecorder", "plot_spectrum_trajectories"]

LOGGER = logging.getLogger("msica.introspect")

#: group label of the whole-batch gradient
ALL_GROUP = "all"

SPECTRA_COLUMNS = ["step", "epoch", "layer", "parameter", "group", "index", "singular_value"]
SUMMARY_COLUMNS = [
    "step", "epoch", "layer", "parameter", "group", "n_samples", "n_rows", "effective_rank",
    "numerical_rank", "rank_bound", "top_singular_value", "frobenius_norm", "method",
]


@fill_doc
class SpectrumRecorder:
    """Singular-value spectra of every layer's batch gradient, on the fly.

    Parameters
    ----------
    model : torch.nn.Module
        Model to watch (hooks are registered at construction).
    record_every : int, default=1
        Record steps ``0, record_every, 2 * record_every, ...``; other steps
        cost nothing.
    top_k : int or None, default=None
        ``None`` computes the exact full spectrum (all ``min(n_rows, m, n)``
        non-zero singular values). An int computes only the top ``k`` by
        structured power iterations; effective and numerical ranks are then
        those of the truncated spectrum.
    method : {"auto", "qr", "gram", "direct"}, default="auto"
        Exact route, see :mod:`pipeline.introspect.linalg`.
    include_bias : bool, default=True
        Spectrum of ``[weight.grad | bias.grad]`` (``True``) or of
        ``weight.grad`` alone.
    rtol : float or None, default=None
        Relative threshold of the numerical rank; ``None`` uses
        ``max(m, n) * eps`` of the working dtype (as ``numpy.linalg.matrix_rank``).
    on_unsupported : {"error", "warn"}, default="error"
        See :class:`~pipeline.introspect.hooks.GradientCapture`.
    %(random_state)s
        Used only by the power iterations (``top_k``).

    Attributes
    ----------
    capture_ : GradientCapture
        The hooks.
    n_recorded_ : int
        Number of recorded steps.

    Notes
    -----
    Use :meth:`record` (or :meth:`begin` / :meth:`commit`) around the forward
    and backward pass of each step. All forward calls with autograd on and
    all backward passes inside it count, so gradient accumulation over
    several backward passes gives the spectrum of the accumulated gradient;
    with ``groups``, though, a step must be one batch (group labels are
    matched to samples by their row in the batch). Group labels are stored
    as strings. The recorded deltas carry the loss's reduction (``mean``
    divides them by the batch size).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    >>> rec = SpectrumRecorder(net)
    >>> x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    >>> with rec.record(step=0, epoch=0, groups=["a", "a", "b", "b", "b", "a"]):
    ...     net(x).square().mean().backward()
    >>> sorted(rec.summary["group"].unique())
    ['a', 'all', 'b']
    >>> rec.remove()
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        record_every: int = 1,
        top_k: int | None = None,
        method: str = "auto",
        include_bias: bool = True,
        rtol: float | None = None,
        on_unsupported: str = "error",
        random_state: Any = None,
    ) -> None:
        check_int("record_every", record_every, 1)
        if top_k is not None:
            check_type("top_k", top_k, int)
            if top_k < 1:
                raise ValueError(f"'top_k' must be None or an int >= 1. Got {top_k}.")
        check_in_allowed("method", method, METHODS)
        if rtol is not None and not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
            raise ValueError(f"'rtol' must be None or a float in (0, 1). Got {rtol!r}.")
        self.record_every = record_every
        self.top_k = top_k
        self.method = method
        self.include_bias = include_bias
        self.rtol = rtol
        self.random_state = random_state
        self.capture_ = GradientCapture(
            model, include_bias=include_bias, on_unsupported=on_unsupported
        )
        self.capture_.enabled = False
        self.n_recorded_ = 0
        self._rng = check_random_state(random_state)
        self._spectra_parts: list[dict] = []
        self._summary_rows: list[dict] = []

    # -- recording ----------------------------------------------------------
    def should_record(self, step: int) -> bool:
        """Whether ``step`` is a recording step."""
        return step % self.record_every == 0

    def begin(self, step: int, *, epoch: int = 0, groups: Sequence | None = None) -> bool:
        """Start a step: enable capture if ``step`` is recorded.

        Parameters
        ----------
        step : int
            Global optimisation step.
        epoch : int, default=0
        groups : sequence of hashable of length batch_size, optional
            Group label of each sample in the batch (e.g. site or diagnosis).

        Returns
        -------
        bool
            Whether this step is recorded.
        """
        self.capture_.clear()
        self._step, self._epoch = int(step), int(epoch)
        self._groups = None if groups is None else list(np.asarray(groups).tolist())
        if self._groups is not None and ALL_GROUP in self._groups:
            raise ValueError(
                f"'groups' must not contain the label {ALL_GROUP!r}, which is reserved for the "
                "whole batch. Rename that group."
            )
        self.capture_.enabled = self.should_record(step)
        return self.capture_.enabled

    def commit(self) -> None:
        """Compute and store the spectra of the step begun with :meth:`begin`.

        Call after ``loss.backward()``; before or after ``optimizer.step()``.
        """
        if not self.capture_.enabled:
            return
        self.capture_.enabled = False
        factors = self.capture_.collect()
        self.capture_.clear()
        if not factors:
            LOGGER.warning("Step %d: no layer received a gradient; nothing recorded.", self._step)
            return
        self._record(factors)
        self.n_recorded_ += 1

    @contextmanager
    def record(self, step: int, *, epoch: int = 0, groups: Sequence | None = None) -> Iterator[bool]:
        """Context manager around one training step's forward and backward.

        Yields whether the step is recorded. See :meth:`begin`.
        """
        recorded = self.begin(step, epoch=epoch, groups=groups)
        try:
            yield recorded
        except BaseException:
            self.capture_.enabled = False
            self.capture_.clear()
            raise
        self.commit()

    def _next_seed(self) -> int:
        return int(derive_seeds(self._rng, 1)[0])

    def _spectrum(self, D, A) -> torch.Tensor:
        if self.top_k is None:
            return gradient_svdvals(D, A, method=self.method)
        k = min(self.top_k, D.shape[0], D.shape[1], A.shape[1])
        return top_singular_values(D, A, k, random_state=self._next_seed()).values

    def _record(self, factors) -> None:
        pending = []  # (layer, factors, group, n_samples, n_rows, values tensor, method)
        if self._groups is not None:
            names, codes = np.unique(np.asarray(self._groups, dtype=object).astype(str), return_inverse=True)
            samples_per_group = np.bincount(codes, minlength=len(names)).tolist()
            codes_on: dict = {}
        for layer, flist in factors.items():
            for f in flist:
                row_codes = None
                if self._groups is not None:
                    if len(self._groups) != f.n_samples:
                        raise ValueError(
                            f"'groups' must have one label per sample of the batch ({f.n_samples} "
                            f"for layer '{layer}'). Got {len(self._groups)} labels."
                        )
                    dev = f.sample.device
                    if dev not in codes_on:
                        codes_on[dev] = torch.as_tensor(codes, device=dev)
                    row_codes = codes_on[dev][f.sample]
                    rows_per_group = torch.bincount(row_codes, minlength=len(names)).tolist()
                if self.top_k is None:
                    n_groups = 0 if row_codes is None else len(names)
                    method = choose_method(self.method, f.A.shape[0], f.shape[0], f.shape[1], 1 + n_groups)
                    whole, vals = batch_and_group_svdvals(f.D, f.A, row_codes, n_groups, method=method)
                else:
                    method = "power"
                    whole = self._spectrum(f.D, f.A)
                    vals = []
                    if row_codes is not None:
                        vals = [self._spectrum(f.D[row_codes == g], f.A[row_codes == g]) for g in range(len(names))]
                pending.append((layer, f, ALL_GROUP, f.n_samples, f.A.shape[0], whole, method))
                for g, val in enumerate(vals):
                    pending.append(
                        (layer, f, str(names[g]), samples_per_group[g], rows_per_group[g], val, method)
                    )
        # one device -> host transfer per step
        flat = torch.cat([p[5].reshape(-1).to(torch.float64) for p in pending]).cpu().numpy()
        offset = 0
        for layer, f, group, n_samples, n_rows, vals, method in pending:
            s = flat[offset: offset + vals.numel()]
            offset += vals.numel()
            m, n = f.shape
            eps = float(torch.finfo(f.A.dtype).eps)
            rtol = self.rtol if self.rtol is not None else max(m, n) * eps
            key = {"step": self._step, "epoch": self._epoch, "layer": layer,
                   "parameter": f.parameter, "group": group}
            self._spectra_parts.append({**key, "values": s})
            self._summary_rows.append({
                **key,
                "n_samples": n_samples,
                "n_rows": n_rows,
                "effective_rank": effective_rank(s),
                "numerical_rank": numerical_rank(s, rtol),
                "rank_bound": f.rank_bound(n_rows),
                "top_singular_value": float(s[0]) if s.size else 0.0,
                "frobenius_norm": float(np.sqrt(np.sum(s * s))),
                "method": method,
            })

    # -- results ------------------------------------------------------------
    @property
    def spectra(self) -> pd.DataFrame:
        """Tidy table, one row per singular value (see the module docstring)."""
        if not self._spectra_parts:
            return pd.DataFrame({c: [] for c in SPECTRA_COLUMNS})
        cols: dict[str, list] = {c: [] for c in SPECTRA_COLUMNS}
        for part in self._spectra_parts:
            k = part["values"].size
            for c in ("step", "epoch", "layer", "parameter", "group"):
                cols[c].extend([part[c]] * k)
            cols["index"].extend(range(k))
            cols["singular_value"].extend(part["values"].tolist())
        return pd.DataFrame(cols)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per (step, layer, parameter, group) (see the module docstring)."""
        return pd.DataFrame(self._summary_rows, columns=SUMMARY_COLUMNS)

    def summary_trajectories(self, value: str = "effective_rank") -> pd.DataFrame:
        """Wide table of one summary column over steps.

        Parameters
        ----------
        value : str, default="effective_rank"
            A numeric column of :attr:`summary`.

        Returns
        -------
        DataFrame
            Index ``step``; columns a MultiIndex ``(layer, parameter, group)``.
        """
        numeric = [c for c in SUMMARY_COLUMNS[5:] if c != "method"]
        check_in_allowed("value", value, numeric)
        return self.summary.pivot_table(
            index="step", columns=["layer", "parameter", "group"], values=value, aggfunc="first"
        )

    def remove(self) -> None:
        """Remove the hooks from the model (the tables are kept)."""
        self.capture_.remove()


def plot_spectrum_trajectories(
    summary: pd.DataFrame, *, value: str = "effective_rank", show_bound: bool = True
):
    """Plot a summary column over steps, one panel per layer, one line per group.

    Parameters
    ----------
    summary : DataFrame
        :attr:`SpectrumRecorder.summary`.
    value : str, default="effective_rank"
        Column to plot.
    show_bound : bool, default=True
        Draw the whole batch's ``rank_bound`` as a dashed line (for rank columns).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure  # Agg-safe: no pyplot state

    if value not in summary.columns:
        raise ValueError(f"'value' must be a column of 'summary' ({list(summary.columns)}). Got {value!r}.")
    keys = list(dict.fromkeys(zip(summary["layer"], summary["parameter"])))
    n = max(1, len(keys))
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(4.0 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (layer, param) in zip(axes, keys):
        sub = summary[(summary["layer"] == layer) & (summary["parameter"] == param)]
        for group, gsub in sub.groupby("group", sort=True):
            ax.plot(gsub["step"], gsub[value], marker=".", label=str(group))
        if show_bound and value in ("effective_rank", "numerical_rank"):
            whole = sub[sub["group"] == ALL_GROUP]
            ax.plot(whole["step"], whole["rank_bound"], "k--", lw=1, label="rank bound")
            ax.set_ylim(bottom=0)
        ax.set_title(f"{layer}.{param}")
        ax.set_xlabel("step")
        ax.set_ylabel(value)
        ax.legend(fontsize="small")
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    return fig
