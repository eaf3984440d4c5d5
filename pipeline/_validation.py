"""Shared parameter and array checks (the one gate for seeds and devices)."""

from __future__ import annotations

import functools
import logging
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.utils import check_random_state as _sk_check_random_state

__all__ = [
    "check_array_2d",
    "check_in_allowed",
    "check_int",
    "check_random_state",
    "check_type",
    "derive_seeds",
    "resolve_device",
    "uses_cuda",
]

LOGGER = logging.getLogger("msica.pipeline")


def check_random_state(seed: Any) -> np.random.RandomState:
    """Turn ``seed`` into a :class:`numpy.random.RandomState` (the one RNG gate).

    Parameters
    ----------
    seed : None, int or numpy.random.RandomState
        ``None`` gives numpy's global RandomState, an int a new seeded one, and
        a RandomState is passed through.

    Returns
    -------
    numpy.random.RandomState
    """
    return _sk_check_random_state(seed)


def derive_seeds(random_state: Any, n: int) -> np.ndarray:
    """Draw ``n`` independent int32 sub-seeds from one generator (CanICA style).

    Parameters
    ----------
    random_state : None, int or numpy.random.RandomState
        Master seed.
    n : int
        Number of sub-seeds (restarts, ICASSO runs, permutations, folds).

    Returns
    -------
    ndarray of shape (n,)
        Seeds in ``[0, 2**31 - 1)``.
    """
    rng = check_random_state(random_state)
    return rng.randint(np.iinfo(np.int32).max, size=n)


def check_in_allowed(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``.

    Examples
    --------
    >>> check_in_allowed("method", "infomax", ["infomax", "fastica"])
    'infomax'
    """
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"'{name}' must be one of {allowed}. Got {value!r}.")
    return value


def check_type(name: str, value: Any, types: type | tuple[type, ...]) -> Any:
    """Raise ``TypeError`` unless ``value`` is an instance of ``types``.

    ``bool`` is refused where an integer is expected.
    """
    types_tuple = types if isinstance(types, tuple) else (types,)
    is_bool_for_int = isinstance(value, bool) and bool not in types_tuple and (
        int in types_tuple or numbers.Integral in types_tuple
    )
    if not isinstance(value, types_tuple) or is_bool_for_int:
        names = ", ".join(t.__name__ for t in types_tuple)
        raise TypeError(f"'{name}' must be of type {names}. Got {type(value).__name__}: {value!r}.")
    return value


def check_int(name: str, value: Any, low: int, high: int | None = None, *,
              bound: str | None = None, fix: str = "") -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[low, high]``, or raise.

    The one rule for integer parameters: :func:`check_type`'s ``TypeError`` for
    anything but an integer (``bool`` included), a ``ValueError`` naming the range
    and the fix for an integer outside it.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : Any
        The value to check.
    low : int
        Smallest value allowed.
    high : int, optional
        Largest value allowed (no upper bound when None).
    bound : str, optional
        What ``high`` is (``"n_volumes - 1"``): the message says ``[low, bound = high]``.
    fix : str
        What to do about it, appended to the message.

    Returns
    -------
    int

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If it is outside the range.

    Examples
    --------
    >>> check_int("n_runs", 3, 1)
    3
    >>> check_int("n_components", 40, 1, 29, bound="n_volumes - 1", fix="Use longer runs.")
    Traceback (most recent call last):
    ...
    ValueError: 'n_components' must be an int in [1, n_volumes - 1 = 29]. Got 40. Use longer runs.
    """
    check_type(name, value, (int, np.integer))
    if value < low or (high is not None and value > high):
        allowed = (f">= {low}" if high is None else
                   f"in [{low}, {f'{bound} = ' if bound else ''}{high}]")
        raise ValueError(f"'{name}' must be an int {allowed}. Got {value}."
                         + (f" {fix}" if fix else ""))
    return int(value)


def check_array_2d(
    name: str,
    array: Any,
    *,
    min_rows: int = 1,
    min_cols: int = 1,
    dtype: Any = np.float64,
    allow_nan: bool = False,
) -> np.ndarray:
    """Return ``array`` as a finite 2-D float array, or raise ``ValueError``.

    Parameters
    ----------
    name : str
        Name used in the error message (e.g. ``"timecourses"``).
    array : array-like
        Input.
    min_rows, min_cols : int
        Minimal shape.
    dtype : numpy dtype
        Output dtype.
    allow_nan : bool
        Accept NaN/inf values.

    Returns
    -------
    ndarray of shape (n_rows, n_cols)
    """
    arr = np.asarray(array, dtype=dtype)
    if arr.ndim != 2:
        raise ValueError(f"'{name}' must be a 2-D array. Got an array of shape {arr.shape}.")
    if arr.shape[0] < min_rows or arr.shape[1] < min_cols:
        raise ValueError(
            f"'{name}' must have at least {min_rows} rows and {min_cols} columns. "
            f"Got shape {arr.shape}."
        )
    if not allow_nan and not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"'{name}' contains {n_bad} NaN or infinite values.")
    return arr


@functools.cache
def _log_cpu_fallback() -> None:
    """Say once per process that ``device='auto'`` found no GPU."""
    LOGGER.info("device='auto': no CUDA device available, computing on CPU.")


def resolve_device(device: Any = "auto"):
    """Return the :class:`torch.device` to compute on (msica's one device policy).

    Every torch step (MOO-ICAR, Infomax/FastICA, group PCA, introspection, the
    classifiers' torch models) resolves its ``device`` here, so they all fall
    back and fail the same way.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or str or torch.device, default="auto"
        ``"auto"`` takes CUDA when available and otherwise CPU (logged once
        per process).
        Asking for CUDA where none is available raises.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If CUDA is asked for and not available, or ``device`` names no CPU or
        CUDA device.
    TypeError
        If ``device`` is neither a str nor a torch.device.
    """
    import torch

    if isinstance(device, torch.device):
        requested = device
    elif device == "auto" or device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        _log_cpu_fallback()
        return torch.device("cpu")
    elif isinstance(device, str):
        try:
            requested = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(
                f"'device' must be 'auto', 'cpu', 'cuda' or 'cuda:<index>'. Got {device!r}."
            ) from exc
    else:
        raise TypeError(f"'device' must be a str or torch.device. Got {type(device).__name__}.")
    if requested.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(requested)!r} was requested but CUDA is not available. "
            "Use device='cpu' or 'auto'."
        )
    if requested.type not in ("cpu", "cuda"):
        raise ValueError(f"'device' must be a CPU or CUDA device. Got {str(requested)!r}.")
    return requested


def uses_cuda(device: Any = "auto") -> bool:
    """Whether ``device`` resolves to a CUDA device (:func:`resolve_device`'s policy).

    Workflow builders use it to schedule torch nodes on GPU slots.

    Examples
    --------
    >>> uses_cuda("cpu")
    False
    """
    return resolve_device(device).type == "cuda"
