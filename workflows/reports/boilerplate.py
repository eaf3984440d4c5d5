"""Methods section of the reports: the workflows' own text, references and package versions.

The text is what :meth:`workflows.execution.engine.Workflow.visit_desc` wrote to
``logs/CITATION.md`` (participant level) and ``logs/CITATION-group.md`` (group level);
its ``@key`` citations become numbered references here.
"""

from __future__ import annotations

import html
import platform
import re
from importlib import metadata
from pathlib import Path

__all__ = ["REFERENCES", "all_references", "methods_html", "package_versions"]

#: Works cited by ``@key`` in the workflows' methods text, and the software every run uses;
#: the entries of pipeline's registries (back-reconstruction methods, FNC measures,
#: connectivity kinds, harmonizers, models) carry their own (:func:`all_references`).
REFERENCES: dict[str, str] = {
    "gift": "Calhoun VD, Adali T, Pearlson GD, Pekar JJ. A method for making group inferences "
            "from functional MRI data using independent component analysis. Hum Brain Mapp. "
            "2001;14(3):140-151.",
    "icasso": "Himberg J, Hyvarinen A, Esposito F. Validating the independent components of "
              "neuroimaging time series via clustering and visualization. NeuroImage. "
              "2004;22(3):1214-1222.",
    "dfnc": "Allen EA, Damaraju E, Plis SM, Erhardt EB, Eichele T, Calhoun VD. Tracking "
            "whole-brain connectivity dynamics in the resting state. Cereb Cortex. "
            "2014;24(3):663-676.",
    "hastie2009": "Hastie T, Tibshirani R, Friedman J. The Elements of Statistical Learning. "
                  "2nd ed. New York: Springer; 2009. Section 7.10 (the one-standard-error "
                  "rule).",
    "nilearn": "Abraham A, et al. Machine learning for neuroimaging with scikit-learn. "
               "Front Neuroinform. 2014;8:14.",
    "nipype": "Gorgolewski K, et al. Nipype: a flexible, lightweight and extensible "
              "neuroimaging data processing framework in Python. Front Neuroinform. 2011;5:13.",
    "pybids": "Yarkoni T, et al. PyBIDS: Python tools for BIDS datasets. J Open Source Softw. "
              "2019;4(40):1294.",
    "sklearn": "Pedregosa F, et al. Scikit-learn: machine learning in Python. J Mach Learn Res. "
               "2011;12:2825-2830.",
    "pytorch": "Paszke A, et al. PyTorch: an imperative style, high-performance deep learning "
               "library. Adv Neural Inf Process Syst. 2019;32:8024-8035.",
}

_SOFTWARE_KEYS = ("nipype", "nilearn", "pybids", "sklearn", "pytorch")
_PACKAGES = ("msica", "nilearn", "nipype", "pybids", "scikit-learn", "torch", "numpy", "scipy",
             "nibabel", "pandas", "matplotlib")
_CITATION = re.compile(r"@([A-Za-z][\w]*)")
#: Methods named in plain words that have a reference (the text cites them without a key).
_NAMED = {"dynamic FNC": "dfnc", "sliding-window FNC": "dfnc", "as in GIFT": "gift"}


def all_references() -> dict[str, str]:
    """:data:`REFERENCES` with the works cited by the registries' entries.

    Returns
    -------
    dict
        ``@key`` -> reference text, from :data:`REFERENCES` and the registries:
        :data:`pipeline.ica.backrecon.BACKRECON_METHODS` and
        :data:`~pipeline.ica.backrecon.GICA`, :data:`pipeline.fnc.static.FNC_MEASURES`,
        :data:`pipeline.classify.connectivity.CONNECTIVITY_KINDS`,
        :data:`pipeline.classify.harmonize.HARMONIZERS` and
        :data:`pipeline.classify.models.MODELS`.
    """
    from pipeline.classify.connectivity import CONNECTIVITY_KINDS
    from pipeline.classify.harmonize import HARMONIZERS
    from pipeline.classify.models import MODELS
    from pipeline.fnc.static import FNC_MEASURES
    from pipeline.ica.backrecon import BACKRECON_METHODS, GICA

    out = dict(REFERENCES)
    for entry in (*BACKRECON_METHODS.values(), GICA, *FNC_MEASURES.values(),
                  *CONNECTIVITY_KINDS.values(), *MODELS.values()):
        out.update(entry.references)
    for harmonizer in HARMONIZERS.values():
        out.update(harmonizer["references"])
    return out


def package_versions() -> dict[str, str]:
    """Installed versions of Python and of the packages msica runs on."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def methods_html(output_dir: str | Path, levels: tuple[str, ...]) -> str:
    """The methods paragraphs of ``levels`` with numbered references, and package versions.

    Parameters
    ----------
    output_dir : path-like
        msica derivatives root (holds ``logs/CITATION*.md``).
    levels : tuple of {"participant", "groupica", "group"}
        Whose methods text to include, in order (``groupica``: the data-driven group
        ICA's); a level without a methods file is left out.
    """
    logs = Path(output_dir) / "logs"
    cited = all_references()
    order: list[str] = []

    def cite(key: str) -> str:
        if key not in cited:
            return html.escape(f"[{key}]")
        if key not in order:
            order.append(key)
        return f"[{order.index(key) + 1}]"

    paragraphs = []
    for level in levels:
        path = logs / ("CITATION.md" if level == "participant" else f"CITATION-{level}.md")
        if not path.is_file():
            continue
        for text in path.read_text(encoding="utf-8").split("\n\n"):
            text = text.strip()
            if not text:
                continue
            for phrase, key in _NAMED.items():
                if phrase in text and f"@{key}" not in text:
                    text = text.replace(phrase, f"{phrase} (@{key})", 1)
            parts = _CITATION.split(html.escape(text))
            paragraphs.append("<p>" + "".join(
                cite(part) if i % 2 else part for i, part in enumerate(parts)) + "</p>")
    if not paragraphs:
        paragraphs.append('<p class="note">No methods text was recorded in logs/.</p>')
    software = ", ".join(f"{name} {cite(key)}" for name, key in zip(
        ("Nipype", "nilearn", "PyBIDS", "scikit-learn", "PyTorch"), _SOFTWARE_KEYS, strict=True))
    paragraphs.append(f"<p>msica is built on {software}.</p>")
    versions = ", ".join(f"{html.escape(name)} {html.escape(version)}"
                         for name, version in package_versions().items())
    paragraphs.append(f"<p>Software versions: {versions}.</p>")
    references = "".join(f"<li>{html.escape(cited[key])}</li>" for key in order)
    return "\n".join(paragraphs) + f'\n<h3>References</h3>\n<ol class="refs">{references}</ol>'
