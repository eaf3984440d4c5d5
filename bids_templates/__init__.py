"""Data files: pybids config, derivative path patterns, dataset_description and sidecar templates."""

from importlib.resources import files

__all__ = ["template_path"]


def template_path(name: str):
    """Return a :class:`importlib.resources` traversable for a shipped data file."""
    return files(__name__) / name
