"""FastICA in torch: symmetric (parallel) fixed-point iteration with log cosh.

The fixed-point update of Hyvarinen (1999) for all sources at once,
``W <- sym_decorrelate(E[g(W x) x.T] - diag(E[g'(W x)]) W)`` with
``g = tanh`` (log cosh contrast), on whitened data. It is the algorithm of
scikit-learn's ``FastICA(algorithm="parallel", fun="logcosh")``, written in
torch so that it runs on a GPU and in float64 everywhere.
"""

from __future__ import annotations

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

__all__ = ["TorchFastICA", "fastica"]


def _sym_decorrelation(w: torch.Tensor) -> torch.Tensor:
    """Return ``(W W.T)**-1/2 W`` (rows orthonormal)."""
    evals, evecs = torch.linalg.eigh(w @ w.T)
    evals = torch.clamp(evals, min=torch.finfo(w.dtype).tiny)
    return (evecs / torch.sqrt(evals)) @ evecs.T @ w


def _fastica_parallel(
    x: torch.Tensor, w_init: torch.Tensor, *, alpha: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, int, float]:
    """Fixed-point iterations on whitened ``x`` of shape (n_components, n_samples)."""
    n_samples = x.shape[1]
    w = _sym_decorrelation(w_init)
    lim = float("inf")
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        gx = torch.tanh(alpha * (w @ x))
        g_mean = (alpha * (1.0 - gx**2)).mean(dim=1)
        w_new = _sym_decorrelation(gx @ x.T / n_samples - g_mean[:, None] * w)
        lim = float(torch.max(torch.abs(torch.abs((w_new * w).sum(dim=1)) - 1.0)))
        w = w_new
        if lim < tol:
            break
    return w, n_iter, lim


@fill_doc
class TorchFastICA(_UnmixingMixin, TransformerMixin, BaseEstimator):
    """FastICA (symmetric, log cosh) in torch, float64.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of sources; ``None`` keeps all features. Only used when
        ``whiten=True`` (otherwise the data must already be white).
    whiten : bool, default=True
        Center and PCA-whiten the data to unit variance first. With
        ``False`` the data are used as given: they must be centred and white.
    alpha : float, default=1.0
        Scale in ``g(u) = tanh(alpha u)``, in [1, 2].
    max_iter : int, default=200
        Maximum number of fixed-point iterations.
    tol : float, default=1e-4
        Stop when ``max_i | |<w_i_new, w_i>| - 1 |`` is below this.
    w_init : ndarray of shape (n_components, n_components) or None, default=None
        Initial unmixing; ``None`` draws a Gaussian matrix from ``random_state``.
    %(random_state)s
    %(device)s

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Unmixing including whitening: ``sources = (X - mean_) @ components_.T``.
    mixing_ : ndarray of shape (n_features, n_components)
        Pseudo-inverse of ``components_``.
    mean_ : ndarray of shape (n_features,)
    whitening_ : ndarray of shape (n_components, n_features) or None
        PCA whitening (``None`` when ``whiten=False``).
    unmixing_ : ndarray of shape (n_components, n_components)
        Unmixing of the whitened data.
    n_iter_ : int
    change_ : float
        Final convergence measure.
    converged_ : bool
        Whether ``change_`` fell below ``tol`` within ``max_iter`` iterations.

    Raises
    ------
    InputDataError
        If ``whiten=True`` and the data have fewer non-zero variance
        directions than ``n_components``.

    Warns
    -----
    ConvergenceWarning
        If ``max_iter`` iterations end before ``tol`` is met.

    References
    ----------
    Hyvarinen A (1999). Fast and robust fixed-point algorithms for independent
    component analysis. IEEE Trans Neural Netw 10:626-634.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = rng.laplace(size=(2000, 3)) @ rng.randn(3, 3)
    >>> TorchFastICA(random_state=0, device="cpu").fit_transform(X).shape
    (2000, 3)
    """

    def __init__(
        self,
        n_components=None,
        *,
        whiten=True,
        alpha=1.0,
        max_iter=200,
        tol=1e-4,
        w_init=None,
        random_state=None,
        device="auto",
    ):
        self.n_components = n_components
        self.whiten = whiten
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.w_init = w_init
        self.random_state = random_state
        self.device = device

    def _fit(self, X) -> np.ndarray:
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        n_samples, n_features = X.shape
        n_comp = n_features if self.n_components is None else self.n_components
        check_int("n_components", n_comp, 1, min(n_samples, n_features),
                  bound="min(n_samples, n_features)", fix="Lower n_components.")
        if not self.whiten and n_comp != n_features:
            raise ValueError(
                f"'n_components' must equal n_features={n_features} when whiten=False. "
                f"Got {n_comp}. Whiten the data first or set whiten=True."
            )
        check_int("max_iter", self.max_iter, 1)
        if not 1.0 <= self.alpha <= 2.0:
            raise ValueError(f"'alpha' must be in [1, 2]. Got {self.alpha}.")
        rng = check_random_state(self.random_state)
        dev = resolve_device(self.device)

        if self.w_init is None:
            w_init = rng.normal(size=(n_comp, n_comp))
        else:
            w_init = check_w_init(self.w_init, n_comp, "n_components")
        data = torch.tensor(X, dtype=torch.float64, device=dev)
        if self.whiten:
            self.mean_ = X.mean(axis=0)
            data = data - torch.as_tensor(self.mean_, device=dev)
            cov = data.T @ data / (n_samples - 1)
            evals, evecs = torch.linalg.eigh(cov)
            evals, evecs = evals.flip(0)[:n_comp], evecs.flip(1)[:, :n_comp]
            if float(evals[-1]) <= 1e-12 * float(evals[0]):
                n_ok = int((evals > 1e-12 * evals[0]).sum())
                raise InputDataError(
                    f"FastICA input has only {n_ok} non-zero variance directions but "
                    f"n_components={n_comp}. Lower n_components to at most {n_ok}."
                )
            whitening = (evecs / torch.sqrt(evals)).T
            x_white = whitening @ data.T
        else:
            self.mean_ = np.zeros(n_features)
            whitening = None
            x_white = data.T
        with torch_threads(1, dev):
            w, n_iter, lim = _fastica_parallel(
                x_white,
                torch.as_tensor(w_init, device=dev),
                alpha=float(self.alpha),
                max_iter=int(self.max_iter),
                tol=float(self.tol),
            )
        unmixing = w @ whitening if whitening is not None else w
        self.unmixing_ = w.cpu().numpy()
        self.whitening_ = None if whitening is None else whitening.cpu().numpy()
        self.components_ = unmixing.cpu().numpy()
        self.mixing_ = np.linalg.pinv(self.components_)
        self.n_iter_ = n_iter
        self.change_ = lim
        self.converged_ = bool(lim < self.tol)
        if not self.converged_:
            warnings.warn(
                f"FastICA did not converge in max_iter={n_iter} iterations: final change "
                f"{lim:.3g} >= tol={self.tol:g}. Increase max_iter or tol.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return (w @ x_white).T.cpu().numpy()

@fill_doc
def fastica(X: Any, n_components: int | None = None, *, return_n_iter: bool = False, **params):
    """Function form of :class:`TorchFastICA`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int or None, default=None
    return_n_iter : bool, default=False
        Also return the number of iterations.
    **params
        Other parameters of :class:`TorchFastICA` (``whiten``, ``max_iter``,
        ``tol``, ``random_state``, ``device``...).

    Returns
    -------
    unmixing : ndarray of shape (n_components, n_features)
    sources : ndarray of shape (n_samples, n_components)
    n_iter : int
        Only when ``return_n_iter``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.RandomState(0).laplace(size=(500, 2))
    >>> W, S = fastica(X, random_state=0, device="cpu")
    >>> S.shape
    (500, 2)
    """
    return function_form(TorchFastICA(n_components=n_components, **params), X, return_n_iter)
