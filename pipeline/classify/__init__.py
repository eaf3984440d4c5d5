"""Site-aware classifiers on network features, with feature selection and biomarker reports.

Entry points: :func:`classify_target` (one target end to end),
:class:`FastSearchClassifier` (the estimator), :func:`nested_cross_validate`,
:func:`permutation_test`, :func:`biomarker_report`, :func:`save_model`,
:func:`load_model` and :func:`predict_table`.
"""

from pipeline.classify.analysis import ClassificationOutcome, classify_target, design_matrix
from pipeline.classify.biomarkers import biomarker_report, parse_edge_name, plot_top_connections
from pipeline.classify.confounds import ConfoundRegressor, encode_confounds
from pipeline.classify.models import MODEL_NAMES, TorchMLPClassifier, default_param_grid, make_model
from pipeline.classify.persistence import data_hash, load_model, predict_table, save_model
from pipeline.classify.search import FastSearchClassifier
from pipeline.classify.selection import RankedSelector, StabilitySelector, anova_f_scores
from pipeline.classify.targets import Target, align_features, derive_target
from pipeline.classify.validation import (
    NestedCVResult,
    PermutationResult,
    nested_cross_validate,
    outer_splits,
    permutation_test,
)

__all__ = [
    "MODEL_NAMES",
    "ClassificationOutcome",
    "ConfoundRegressor",
    "FastSearchClassifier",
    "NestedCVResult",
    "PermutationResult",
    "RankedSelector",
    "StabilitySelector",
    "Target",
    "TorchMLPClassifier",
    "align_features",
    "anova_f_scores",
    "biomarker_report",
    "classify_target",
    "data_hash",
    "default_param_grid",
    "derive_target",
    "design_matrix",
    "encode_confounds",
    "load_model",
    "make_model",
    "nested_cross_validate",
    "outer_splits",
    "parse_edge_name",
    "permutation_test",
    "plot_top_connections",
    "predict_table",
    "save_model",
]
