"""Site-aware classifiers on connectivity features, with harmonization, biomarkers and safe models.

Entry points: :func:`classify_target` (one target end to end, with the defaults of
:data:`CLASSIFIER_DEFAULTS`),
:class:`FastSearchClassifier` (the estimator), :class:`ConnectivityFeatures`
(connectivity kinds, :data:`CONNECTIVITY_KINDS`), :class:`ComBat` (site
harmonization), :func:`nested_cross_validate`, :func:`permutation_test`,
:func:`biomarker_report`, :func:`save_model`, :func:`load_model` and
:func:`predict_table`.
"""

from pipeline.classify.analysis import (
    ClassificationOutcome,
    Design,
    classify_target,
    design_matrix,
    metrics_table,
)
from pipeline.classify.biomarkers import biomarker_report, parse_edge_name, plot_top_connections
from pipeline.classify.confounds import ConfoundRegressor, encode_confounds
from pipeline.classify.connectivity import (
    CONNECTIVITY_KINDS,
    ConnectivityFeatures,
    covariance_table,
    participant_covariances,
)
from pipeline.classify.harmonize import HARMONIZERS, ComBat, resolve_harmonize
from pipeline.classify.models import MODEL_NAMES, MODELS, TorchMLPClassifier, default_param_grid, make_model
from pipeline.classify.persistence import data_hash, load_model, predict_table, save_model
from pipeline.classify.preprocess import FoldPreprocessor
from pipeline.classify.search import CLASSIFIER_DEFAULTS, FastSearchClassifier, resolve_inner_split
from pipeline.classify.selection import RankedSelector, StabilitySelector, anova_f_scores
from pipeline.classify.targets import (
    Target,
    align_features,
    check_participants_columns,
    derive_target,
    drop_without_features,
)
from pipeline.classify.validation import (
    NestedCVResult,
    PermutationResult,
    nested_cross_validate,
    outer_splits,
    permutation_test,
)

__all__ = [
    "CLASSIFIER_DEFAULTS",
    "CONNECTIVITY_KINDS",
    "HARMONIZERS",
    "MODELS",
    "MODEL_NAMES",
    "ClassificationOutcome",
    "ComBat",
    "ConfoundRegressor",
    "ConnectivityFeatures",
    "Design",
    "FastSearchClassifier",
    "FoldPreprocessor",
    "NestedCVResult",
    "PermutationResult",
    "RankedSelector",
    "StabilitySelector",
    "Target",
    "TorchMLPClassifier",
    "align_features",
    "anova_f_scores",
    "biomarker_report",
    "check_participants_columns",
    "classify_target",
    "covariance_table",
    "data_hash",
    "default_param_grid",
    "derive_target",
    "design_matrix",
    "drop_without_features",
    "encode_confounds",
    "load_model",
    "make_model",
    "metrics_table",
    "nested_cross_validate",
    "outer_splits",
    "parse_edge_name",
    "participant_covariances",
    "permutation_test",
    "plot_top_connections",
    "predict_table",
    "resolve_harmonize",
    "resolve_inner_split",
    "save_model",
]
