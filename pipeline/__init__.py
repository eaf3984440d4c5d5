"""msica's science: array-level algorithms for multi-scale ICA, FNC and classifiers.

Nothing in this package imports Nipype, pybids or the command line; see
``workflows`` for the plumbing.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("msica")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
