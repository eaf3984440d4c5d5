"""Group ICA, stability, multi-scale templates and back-reconstruction."""
