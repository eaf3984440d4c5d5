"""Gradient-spectrum introspection of torch models during training.

Singular values of each layer's batch gradient ``G = Dᵀ A`` (deltas x
activations), of the whole batch and of each group's share, computed from the
captured activations and deltas without forming ``G``.

Modules
-------
linalg       the math: QR core, Gram eigenproblems, power iterations, ranks
derivatives  per-layer rows (Linear, Conv1d/2d via unfold, RNNCell/GRUCell)
hooks        capture plumbing (:class:`GradientCapture`, handler registry)
recorder     :class:`SpectrumRecorder`, tidy tables and plots
models       :class:`FNCMLP`, :class:`TimecourseCNN`, :class:`TimecourseGRU`
training     :func:`train_with_introspection`
target       :func:`introspect_target`, the group level's run on one target of
             the FNC table (imported from its module: it needs
             :mod:`pipeline.classify`)
"""

from pipeline.introspect.hooks import HANDLERS, GradientCapture
from pipeline.introspect.linalg import (
    effective_rank,
    gradient_svdvals,
    group_gradient_svdvals,
    numerical_rank,
    top_singular_values,
)
from pipeline.introspect.models import FNCMLP, TimecourseCNN, TimecourseGRU
from pipeline.introspect.recorder import SpectrumRecorder, plot_spectrum_trajectories
from pipeline.introspect.training import IntrospectionResult, train_with_introspection

__all__ = [
    "FNCMLP",
    "HANDLERS",
    "GradientCapture",
    "IntrospectionResult",
    "SpectrumRecorder",
    "TimecourseCNN",
    "TimecourseGRU",
    "effective_rank",
    "gradient_svdvals",
    "group_gradient_svdvals",
    "numerical_rank",
    "plot_spectrum_trajectories",
    "top_singular_values",
    "train_with_introspection",
]
