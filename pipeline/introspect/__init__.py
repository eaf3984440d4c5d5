"""Gradient-spectrum introspection of torch models during training."""
