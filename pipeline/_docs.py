"""Shared numpydoc fragments, inserted with :func:`fill_doc` (nilearn style).

Add an entry here when a parameter is documented the same way in two or more
places. A malformed template fails when the module using it is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

__all__ = ["docdict", "fill_doc"]

F = TypeVar("F", bound=Callable)

docdict: dict[str, str] = {}

docdict["random_state"] = """random_state : None, int or numpy.random.RandomState, default=None
        Seed of every random step (restarts, bootstraps, permutations, folds).
        Pass an int for reproducible results across calls; sub-seeds are drawn
        from this one generator."""

docdict["device"] = """device : {"auto", "cpu", "cuda"} or torch.device, default="auto"
        Where torch computes. ``"auto"`` uses CUDA when available, else CPU
        (logged). Asking for ``"cuda"`` without a GPU raises ``ValueError``."""

docdict["ica_params"] = """ica_params : dict or None, default=None
        Extra parameters of the ICA estimator (e.g. ``{"max_iter": 256}``)."""

docdict["t_r"] = """t_r : float
        Repetition time of the acquisition, in seconds."""

docdict["mask_img"] = """mask_img : Niimg-like
        3-D brain mask on the same grid as the data; non-zero voxels are in."""

docdict["model_order"] = """model_order : int
        Number of independent components (networks) at this scale."""

docdict["n_jobs"] = """n_jobs : int, default=1
        Number of CPU workers; ``-1`` uses all cores."""

docdict["verbose"] = """verbose : int, default=0
        Verbosity of logging; 0 is silent."""

docdict["timecourses"] = """timecourses : array-like of shape (n_volumes, n_networks)
        Network time courses, one column per network."""


def fill_doc(obj: F, entries: Mapping[str, str] = docdict) -> F:
    """Fill ``%(name)s`` placeholders in ``obj.__doc__`` from :data:`docdict`.

    Parameters
    ----------
    obj : callable or class
        What is documented; its docstring is replaced.
    entries : mapping of str to str, default=docdict
        The fragments (another package's docdict, with
        ``functools.partial(fill_doc, entries=...)``).

    Raises
    ------
    RuntimeError
        If the docstring is not a valid template (a literal ``%`` must be
        written ``%%``) or names an unknown entry.
    """
    doc = obj.__doc__
    if not doc:
        return obj
    try:
        obj.__doc__ = doc % entries
    except (TypeError, ValueError, KeyError) as exc:
        raise RuntimeError(
            f"Filling the docstring of {obj.__qualname__} failed: {exc!r}. "
            "Did you forget to escape a character with an extra '%'?"
        ) from exc
    return obj
