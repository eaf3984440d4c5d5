"""Shared docstring fragments: filled where asked, refused when malformed, none left unfilled."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import pipeline
import workflows
from pipeline._docs import docdict, fill_doc
from workflows._docs import docdict as workflows_docdict
from workflows._docs import fill_doc as workflows_fill_doc


def test_fill_doc_fills_the_entries():
    @fill_doc
    def f():
        """Parameters
        ----------
        %(t_r)s
        """

    assert docdict["t_r"] in f.__doc__ and "%(" not in f.__doc__


@pytest.mark.parametrize("doc", ["%(no_such_entry)s", "100% of the runs"])
def test_fill_doc_refuses_a_malformed_docstring(doc):
    with pytest.raises(RuntimeError, match="Filling the docstring of .*f failed"):
        fill_doc(_doc_of(doc))


def test_workflows_entries_add_to_the_pipeline_entries():
    assert set(docdict) < set(workflows_docdict)
    assert all(workflows_docdict[key] == text for key, text in docdict.items())

    @workflows_fill_doc
    def init_x_wf():
        """%(mem_gb)s
        %(random_state)s"""

    assert workflows_docdict["mem_gb"] in init_x_wf.__doc__
    assert docdict["random_state"] in init_x_wf.__doc__
    with pytest.raises(RuntimeError, match="KeyError\\('mem_gb'\\)"):
        fill_doc(_doc_of("%(mem_gb)s"))  # the science does not know the builders' entries


def _doc_of(doc: str):
    def f():
        pass

    f.__doc__ = doc
    return f


def _documented(package) -> list[tuple[str, object]]:
    """Functions and classes (and their methods) defined in the package's modules, but in
    the ``_docs`` modules, which document the placeholder syntax itself."""
    found = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith("._docs"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found.append((f"{module.__name__}.{name}", obj))
                if inspect.isclass(obj):
                    found += [(f"{module.__name__}.{name}.{attr}", member)
                              for attr, member in vars(obj).items()
                              if inspect.isfunction(member)]
    return found


@pytest.mark.parametrize("package", [pipeline, workflows], ids=lambda p: p.__name__)
def test_no_placeholder_is_left_unfilled(package):
    """A docstring with ``%(name)s`` needs @fill_doc: none is published with one unfilled."""
    unfilled = [name for name, obj in _documented(package) if "%(" in (obj.__doc__ or "")]
    assert not unfilled
