"""Infomax ICA in torch, with the defaults of GIFT's ``icatb_runica``.

The algorithm is Bell & Sejnowski's natural-gradient Infomax with Lee et al.'s
extended mode, as in EEGLAB's ``runica`` and its GIFT copy ``icatb_runica``.
GIFT defaults (read from GIFT's ``icatb_getICAOptions``/``icatb_runica``):
block ``floor(sqrt(frames / 3))``, learning rate ``0.015 / log(n_channels)``,
annealing ``x 0.9`` whenever the angle between successive weight changes
exceeds 60 degrees, stop when the squared weight change is below ``1e-6``,
at most 512 steps, sphering and bias on, weights restarted with the learning
rate times 0.9 when they blow up (``|w| > 1e8`` or NaN). GIFT's fixture
``test_icatb_backReconstruct`` records block 40 for 4848 voxels and lrate
0.0050071 for 20 components, which these formulas reproduce.

In spatial ICA of fMRI the *channels* are the (group-PCA) components and the
*frames* are the voxels. The estimator below follows scikit-learn's
orientation: ``X`` has shape ``(n_samples, n_features)`` = ``(n_voxels, n_components)``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import validate_data

from pipeline._docs import fill_doc
from pipeline._threads import torch_threads
from pipeline._validation import check_int, check_random_state, resolve_device
from pipeline.exceptions import ConvergenceWarning, InputDataError
from pipeline.ica._unmixing import _UnmixingMixin, check_w_init, function_form

__all__ = ["Infomax", "fit_runs", "infomax"]

LOGGER = logging.getLogger("msica.ica")

MAX_WEIGHT = 1e8
RESTART_FACTOR = 0.9
BLOWUP = 1e9
BLOWUP_FACTOR = 0.8
EXT_ANNEAL = 0.98
KURT_SIZE = 6000
SIGNS_BIAS = 0.02
EXT_MOMENTUM = 0.5
SIGNCOUNT_THRESHOLD = 25
SIGNCOUNT_STEP = 2


def default_block(n_frames: int) -> int:
    """GIFT's default block size ``floor(sqrt(n_frames / 3))`` (at least 2).

    Examples
    --------
    >>> default_block(4848)
    40
    """
    return max(2, int(math.floor(math.sqrt(n_frames / 3.0))))


def default_lrate(n_channels: int) -> float:
    """GIFT's default learning rate ``0.015 / log(n_channels)``.

    Examples
    --------
    >>> round(default_lrate(20), 7)
    0.0050071
    """
    return 0.015 / math.log(max(n_channels, 2))


def _sphere(data: torch.Tensor) -> torch.Tensor:
    """Return ``2 * cov(data)**-1/2`` (runica's sphering matrix)."""
    n_frames = data.shape[1]
    cov = data @ data.T / (n_frames - 1)
    evals, evecs = torch.linalg.eigh(cov)
    if float(evals.min()) <= 1e-12 * float(evals.max()):
        n_ok = int((evals > 1e-12 * evals.max()).sum())
        raise InputDataError(
            f"Infomax input must have full rank: the {data.shape[0]} features span only "
            f"{n_ok} dimensions. Reduce the data with PCA to at most {n_ok} components first."
        )
    return 2.0 * (evecs / torch.sqrt(evals)) @ evecs.T


def _runica(
    data: torch.Tensor,
    *,
    lrate: float,
    block: int,
    extended: bool,
    n_subgauss: int,
    stop: float,
    max_iter: int,
    anneal_step: float,
    anneal_deg: float,
    use_bias: bool,
    min_lrate: float,
    rngs: list,
    w_start: torch.Tensor,
) -> list[dict]:
    """Core loop, several independent runs at once (batched matrix products).

    ``data`` is the sphered data, of shape (n_runs, n_channels, n_frames), or
    (1, n_channels, n_frames) when every run sees the same data; ``w_start``
    is (n_runs, n_channels, n_channels). Run ``r`` draws its sample orders
    (and kurtosis subsamples) from ``rngs[r]`` and has its own learning rate,
    annealing, blow-up restarts and stopping, exactly as a lone run; a run
    that stops leaves the batch. Returns one result dict per run.
    """
    n_runs = w_start.shape[0]
    _, n_chans, n_frames = data.shape
    shared = data.shape[0] == 1
    dev, dt = data.device, data.dtype
    eye = torch.eye(n_chans, dtype=dt, device=dev)
    n_blocks = n_frames // block
    n_used = n_blocks * block
    block_eye = block * eye
    degconst = 180.0 / math.pi
    start_signs = torch.ones(n_chans, dtype=dt, device=dev)
    start_signs[: min(n_subgauss, n_chans)] = -1.0

    lrates = [float(lrate)] * n_runs
    restarts = [0] * n_runs
    results: list = [None] * n_runs
    # Per-run state; rows of the tensors follow ``active``.
    active = list(range(n_runs))
    weights = w_start.clone()
    bias = torch.zeros((n_runs, n_chans, 1), dtype=dt, device=dev)
    signs = start_signs.repeat(n_runs, 1)
    old_signs = signs.clone()
    old_kk = torch.zeros((n_runs, n_chans), dtype=dt, device=dev)
    old_weights = weights.clone()
    old_delta = torch.zeros((n_runs, n_chans * n_chans), dtype=dt, device=dev)
    fresh = {"step": 0, "old_change": None, "sign_count": 0, "ext_blocks": 1, "block_no": 1,
             "change": float("nan")}
    state = [dict(fresh) for _ in range(n_runs)]

    def restart(i: int) -> None:
        run = active[i]
        restarts[run] += 1
        lrates[run] *= RESTART_FACTOR
        if lrates[run] < min_lrate:
            raise InputDataError(
                f"Infomax weights blew up {restarts[run]} times; the learning rate fell from "
                f"{lrate:g} below min_lrate={min_lrate:g}. The input may be rank "
                "deficient or badly scaled: reduce the dimension or lower 'lrate'."
            )
        LOGGER.info("Infomax weights blew up; restarting with lrate=%g.", lrates[run])
        weights[i] = w_start[run]
        bias[i] = 0.0
        signs[i] = start_signs
        old_signs[i] = start_signs
        old_kk[i] = 0.0
        state[i] = dict(fresh)

    frames = data.transpose(1, 2).contiguous().view(-1, n_chans)  # (n_data * n_frames, n_chans)
    buffer = torch.empty((n_runs * n_used, n_chans), dtype=dt, device=dev)
    while active:
        n_act = len(active)
        lr = torch.tensor([lrates[r] for r in active], dtype=dt, device=dev)[:, None, None]
        lr_eye = lr * block_eye
        minus_2lr = -2.0 * lr
        perm = np.stack([rngs[r].permutation(n_frames)[:n_used] for r in active])
        if not shared:  # rows of the flattened (n_runs * n_frames, n_chans) frames
            perm += np.asarray(active)[:, None] * n_frames
        # One row gather into a reused buffer (a fresh 10-100 MB tensor per step costs
        # more in page faults than the copy), (n_act, n_blocks, block, n_chans); each
        # block is then a column-major (n_act, n_chans, block) view that bmm takes as is.
        gathered = torch.index_select(frames, 0, torch.as_tensor(perm, device=dev).view(-1),
                                      out=buffer[: n_act * n_used])
        blocks = gathered.view(n_act, n_blocks, block, n_chans).permute(1, 0, 3, 2)
        sign_col = signs[:, :, None]
        for xb in blocks.unbind(0):
            if not extended:  # lrate * g, g = 1 - 2 sigmoid(u) (sigmoid: much faster than tanh)
                u = torch.baddbmm(bias, weights, xb)
                g_l = torch.addcmul(lr, torch.sigmoid(u), minus_2lr)
                grad_l = torch.baddbmm(lr_eye, g_l, u.mT)
                if use_bias:
                    bias = bias + g_l.sum(dim=2, keepdim=True)
                weights = torch.baddbmm(weights, grad_l, weights)
                continue
            u = torch.baddbmm(bias, weights, xb)
            y = torch.tanh(u)
            grad = torch.baddbmm(block_eye, torch.addcmul(u, sign_col, y), u.mT, alpha=-1.0)
            if use_bias:
                bias = torch.addcmul(bias, lr, y.sum(dim=2, keepdim=True), value=-2.0)
            weights = torch.baddbmm(weights, grad * lr, weights)
            due = [i for i in range(n_act) if state[i]["block_no"] % state[i]["ext_blocks"] == 0]
            if due:
                kurt_size = min(KURT_SIZE, n_frames)
                rows = torch.as_tensor(due, device=dev)
                idx = np.stack([rngs[active[i]].randint(0, n_frames, size=kurt_size) for i in due])
                if not shared:
                    idx += np.asarray([active[i] for i in due])[:, None] * n_frames
                sub = torch.index_select(frames, 0, torch.as_tensor(idx, device=dev).view(-1))
                act = torch.bmm(weights[rows], sub.view(len(due), kurt_size, n_chans).mT)
                kk = (act**4).mean(dim=2) / (act**2).mean(dim=2) ** 2 - 3.0
                kk = EXT_MOMENTUM * old_kk[rows] + (1.0 - EXT_MOMENTUM) * kk
                old_kk[rows] = kk
                new_signs = torch.sign(kk + SIGNS_BIAS)
                same = (new_signs == old_signs[rows]).all(dim=1).tolist()
                signs[rows] = new_signs
                old_signs[rows] = new_signs
                sign_col = signs[:, :, None]
                for i, unchanged in zip(due, same):
                    st = state[i]
                    st["sign_count"] = st["sign_count"] + 1 if unchanged else 0
                    if st["sign_count"] >= SIGNCOUNT_THRESHOLD:
                        st["ext_blocks"] = int(st["ext_blocks"] * SIGNCOUNT_STEP)
                        st["sign_count"] = 0
            for st in state:
                st["block_no"] += 1
        # Checked once per step (one device sync): a blow-up mid-step leaves
        # huge or non-finite weights that are still caught here.
        w_max = weights.abs().amax(dim=(1, 2)).tolist()
        delta = (weights - old_weights).reshape(n_act, -1)
        changes = (delta * delta).sum(dim=1).tolist()
        dots = (delta * old_delta).sum(dim=1).tolist()
        keep_delta = []
        done = []
        for i in range(n_act):
            st, run = state[i], active[i]
            change = changes[i]
            if not w_max[i] <= MAX_WEIGHT or not math.isfinite(change):
                restart(i)
                continue
            st["step"] += 1
            st["change"] = change
            step = st["step"]
            if step > 2 and st["old_change"] is not None:
                cosine = dots[i] / math.sqrt(change * st["old_change"])
                angle = math.acos(max(-1.0, min(1.0, cosine)))
                if degconst * angle > anneal_deg:
                    lrates[run] *= anneal_step
                    keep_delta.append(i)
                    st["old_change"] = change
            elif step == 1:
                keep_delta.append(i)
                st["old_change"] = change
            if step > 2 and change < stop:
                done.append((i, True))
                continue
            if change > BLOWUP:
                lrates[run] *= BLOWUP_FACTOR
            if step >= max_iter:
                done.append((i, False))
        if keep_delta:
            rows = torch.as_tensor(keep_delta, device=dev)
            old_delta[rows] = delta[rows]
        old_weights = weights.clone()
        for i, converged in done:
            st = state[i]
            results[active[i]] = {
                "weights": weights[i],
                "bias": bias[i],
                "signs": signs[i],
                "n_iter": st["step"],
                "change": st["change"],
                "lrate": lrates[active[i]],
                "converged": converged,
                "n_restarts": restarts[active[i]],
            }
        if done:
            finished = {i for i, _ in done}
            keep = [i for i in range(n_act) if i not in finished]
            rows = torch.as_tensor(keep, dtype=torch.long, device=dev)
            active = [active[i] for i in keep]
            state = [state[i] for i in keep]
            weights, bias, signs, old_signs, old_kk, old_weights, old_delta = (
                t[rows] for t in (weights, bias, signs, old_signs, old_kk, old_weights, old_delta)
            )
    return results


@fill_doc
class Infomax(_UnmixingMixin, TransformerMixin, BaseEstimator):
    """(Extended) Infomax ICA in torch with GIFT's ``icatb_runica`` defaults.

    Parameters
    ----------
    lrate : float or None, default=None
        Initial learning rate; ``None`` uses ``0.015 / log(n_features)``.
    block : int or None, default=None
        Mini-batch size; ``None`` uses ``floor(sqrt(n_samples / 3))``.
    extended : bool, default=False
        Extended Infomax (Lee et al. 1999): switch each source between
        sub- and super-Gaussian from its running kurtosis.
    n_subgauss : int, default=1
        Number of sources started as sub-Gaussian in extended mode.
    stop : float, default=1e-6
        Stop when the squared change of the weights falls below this.
    max_iter : int, default=512
        Maximum number of passes (steps) over the data.
    anneal_step : float or None, default=None
        Learning-rate factor applied when the weight-change direction turns
        by more than ``anneal_deg``; ``None`` uses 0.9 (0.98 when extended).
    anneal_deg : float, default=60.0
        Angle (degrees) that triggers annealing.
    sphering : bool, default=True
        Sphere the data with ``2 cov**-1/2`` first (runica's sphering).
    use_bias : bool, default=True
        Learn a bias per source.
    min_lrate : float, default=1e-6
        Give up (``InputDataError``) when repeated blow-ups push the learning
        rate below this.
    w_init : ndarray of shape (n_features, n_features) or None, default=None
        Starting weights for the sphered data; ``None`` starts from the
        identity, as runica does (ICASSO's "randinit" passes random ones).
    %(random_state)s
    %(device)s

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        Unmixing matrix including sphering: ``sources = (X - mean_) @ components_.T``.
    mixing_ : ndarray of shape (n_features, n_features)
        Pseudo-inverse of ``components_``.
    mean_ : ndarray of shape (n_features,)
    sphere_ : ndarray of shape (n_features, n_features)
    weights_ : ndarray of shape (n_features, n_features)
        Unmixing of the sphered data.
    bias_ : ndarray of shape (n_features,)
    signs_ : ndarray of shape (n_features,)
        +1 super-Gaussian, -1 sub-Gaussian (extended mode; all +1 otherwise).
    n_iter_ : int
        Number of steps done.
    change_ : float
        Final squared weight change.
    converged_ : bool
        Whether ``change_`` fell below ``stop`` within ``max_iter`` steps.
    lrate_ : float
        Final learning rate.
    n_restarts_ : int
        Number of blow-up restarts.

    Raises
    ------
    InputDataError
        If the data are rank deficient or the weights keep blowing up.

    Warns
    -----
    ConvergenceWarning
        If ``max_iter`` steps end before the weight change is below ``stop``.

    Notes
    -----
    Computation is float64. Components are sorted by decreasing mean
    projected variance, as runica does. The only randomness is the order of
    the samples in each step (and the kurtosis subsample in extended mode).

    References
    ----------
    Bell AJ, Sejnowski TJ (1995). Neural Comput 7:1129-1159.
    Lee TW, Girolami M, Sejnowski TJ (1999). Neural Comput 11:417-441.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> S = rng.laplace(size=(2000, 3))
    >>> X = S @ rng.randn(3, 3)
    >>> ica = Infomax(random_state=0, device="cpu").fit(X)
    >>> ica.transform(X).shape
    (2000, 3)
    """

    def __init__(
        self,
        *,
        lrate=None,
        block=None,
        extended=False,
        n_subgauss=1,
        stop=1e-6,
        max_iter=512,
        anneal_step=None,
        anneal_deg=60.0,
        sphering=True,
        use_bias=True,
        min_lrate=1e-6,
        w_init=None,
        random_state=None,
        device="auto",
    ):
        self.lrate = lrate
        self.block = block
        self.extended = extended
        self.n_subgauss = n_subgauss
        self.stop = stop
        self.max_iter = max_iter
        self.anneal_step = anneal_step
        self.anneal_deg = anneal_deg
        self.sphering = sphering
        self.use_bias = use_bias
        self.min_lrate = min_lrate
        self.w_init = w_init
        self.random_state = random_state
        self.device = device

    def _fit(self, X) -> np.ndarray:
        prep = self._prepare(X)
        dev = prep["data"].device
        with torch_threads(1, dev):
            out = _runica((prep["sphere"] @ prep["data"])[None], rngs=[prep["rng"]],
                          w_start=prep["w_start"][None], **prep["params"])[0]
        return self._finish(out, prep)

    def _prepare(self, X) -> dict:
        """Validate ``X`` and the parameters; centre and sphere (sets ``mean_``)."""
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        n_samples, n_features = X.shape
        check_int("max_iter", self.max_iter, 1)
        block = default_block(n_samples) if self.block is None else self.block
        check_int("block", block, 1, n_samples, bound="n_samples",
                  fix="Use block=None for GIFT's default floor(sqrt(n_samples / 3)).")
        lrate = default_lrate(n_features) if self.lrate is None else float(self.lrate)
        if not lrate > 0:
            raise ValueError(f"'lrate' must be > 0. Got {self.lrate}. Use None for the default.")
        anneal = self.anneal_step
        if anneal is None:
            anneal = EXT_ANNEAL if self.extended else 0.9
        if not 0 < anneal <= 1:
            raise ValueError(f"'anneal_step' must be in (0, 1]. Got {anneal}.")
        rng = check_random_state(self.random_state)
        dev = resolve_device(self.device)

        self.mean_ = X.mean(axis=0)
        data = torch.as_tensor((X - self.mean_).T.copy(), dtype=torch.float64, device=dev)
        if n_features == 1:
            sphere = torch.ones((1, 1), dtype=torch.float64, device=dev)
            sphere = sphere / torch.sqrt((data**2).mean())
        elif self.sphering:
            sphere = _sphere(data)
        else:
            sphere = torch.eye(n_features, dtype=torch.float64, device=dev)
        if self.w_init is None:
            w_start = torch.eye(n_features, dtype=torch.float64, device=dev)
        else:
            w_start = torch.as_tensor(check_w_init(self.w_init, n_features, "n_features"),
                                      device=dev)
        params = {
            "lrate": lrate,
            "block": int(block),
            "extended": bool(self.extended),
            "n_subgauss": int(self.n_subgauss),
            "stop": float(self.stop),
            "max_iter": int(self.max_iter),
            "anneal_step": float(anneal),
            "anneal_deg": float(self.anneal_deg),
            "use_bias": bool(self.use_bias),
            "min_lrate": float(self.min_lrate),
        }
        return {"data": data, "sphere": sphere, "w_start": w_start, "rng": rng, "params": params}

    def _finish(self, out: dict, prep: dict) -> np.ndarray:
        """Set the fitted attributes from one run's result; return the sources."""
        data, sphere = prep["data"], prep["sphere"]
        n_features, n_samples = data.shape
        unmixing = out["weights"] @ sphere
        sources = unmixing @ data
        mixing = torch.linalg.pinv(unmixing)
        meanvar = (mixing**2).sum(dim=0) * (sources**2).sum(dim=1) / max(n_samples - 1, 1)
        order = torch.argsort(meanvar, descending=True)
        self.components_ = unmixing[order].cpu().numpy()
        self.mixing_ = mixing[:, order].cpu().numpy()
        self.sphere_ = sphere.cpu().numpy()
        self.weights_ = out["weights"][order].cpu().numpy()
        self.bias_ = out["bias"][order, 0].cpu().numpy()
        self.signs_ = out["signs"][order].cpu().numpy() if self.extended else np.ones(n_features)
        self.n_iter_ = out["n_iter"]
        self.change_ = out["change"]
        self.converged_ = bool(out["converged"])
        self.lrate_ = out["lrate"]
        self.n_restarts_ = out["n_restarts"]
        if not out["converged"]:
            warnings.warn(
                f"Infomax did not converge in max_iter={self.n_iter_} steps: final weight change "
                f"{self.change_:.3g} > stop={self.stop:g}. Increase max_iter or stop.",
                ConvergenceWarning,
                stacklevel=4,
            )
        return sources[order].T.cpu().numpy()


def fit_runs(estimators: list, datasets: list) -> list[bool]:
    """Fit several :class:`Infomax` estimators at once (ICASSO's repeated runs).

    The runs share every parameter but ``w_init`` and ``random_state``; each
    ends exactly as its own ``fit`` would (same sample orders, same stopping),
    but the matrix products of all runs are batched, which divides the
    per-operation overhead of the mini-batch loop by the number of runs.

    Parameters
    ----------
    estimators : list of Infomax
        Unfitted estimators, identical but for ``w_init`` and ``random_state``.
    datasets : list of array-like of shape (n_samples, n_features)
        One per estimator; pass the same object to share it (no copies).

    Returns
    -------
    list of bool
        Each estimator's ``converged_`` (the others warn, as ``fit`` does).

    Raises
    ------
    ValueError
        If the estimators differ in other parameters, or the lists in length.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.RandomState(0).laplace(size=(1000, 2)) @ [[1.0, 0.5], [0.2, 1.0]]
    >>> ests = [Infomax(random_state=s, device="cpu") for s in (0, 1)]
    >>> fit_runs(ests, [X, X])
    [True, True]
    """
    if len(estimators) != len(datasets) or not estimators:
        raise ValueError(
            f"'estimators' and 'datasets' must be non-empty lists of equal length. Got "
            f"{len(estimators)} and {len(datasets)}."
        )
    preps = [est._prepare(X) for est, X in zip(estimators, datasets)]
    params = preps[0]["params"]
    if any(p["params"] != params for p in preps[1:]):
        raise ValueError(
            "'estimators' must share every parameter but w_init and random_state. "
            "Fit differently configured estimators separately."
        )
    shared = all(X is datasets[0] for X in datasets) and all(
        torch.equal(p["sphere"], preps[0]["sphere"]) for p in preps[1:])
    sphered = [p["sphere"] @ p["data"] for p in (preps[:1] if shared else preps)]
    dev = sphered[0].device
    with torch_threads(1, dev):
        outs = _runica(torch.stack(sphered), rngs=[p["rng"] for p in preps],
                       w_start=torch.stack([p["w_start"] for p in preps]), **params)
    for est, out, prep in zip(estimators, outs, preps):
        est._finish(out, prep)
    return [est.converged_ for est in estimators]


@fill_doc
def infomax(X: Any, *, return_n_iter: bool = False, **params: Any):
    """Function form of :class:`Infomax`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data (voxels x components in spatial ICA).
    return_n_iter : bool, default=False
        Also return the number of steps.
    **params
        Any parameter of :class:`Infomax` (``lrate``, ``block``, ``extended``,
        ``stop``, ``max_iter``, ``random_state``, ``device``...).

    Returns
    -------
    unmixing : ndarray of shape (n_features, n_features)
        ``sources = (X - X.mean(0)) @ unmixing.T``.
    sources : ndarray of shape (n_samples, n_features)
    n_iter : int
        Only when ``return_n_iter``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = rng.laplace(size=(1000, 2)) @ rng.randn(2, 2)
    >>> W, S = infomax(X, random_state=0, device="cpu")
    >>> W.shape, S.shape
    ((2, 2), (1000, 2))
    """
    return function_form(Infomax(**params), X, return_n_iter)
