"""Site-aware classifiers on network features, with feature selection and biomarker reports."""
