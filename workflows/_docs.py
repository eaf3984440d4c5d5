"""Numpydoc fragments shared by the workflow builders, inserted with :func:`fill_doc`.

The workflows' own entries beside :data:`pipeline._docs.docdict`'s: add one here
when a builder's parameter or section is documented the same way in two or more
places.
"""

from __future__ import annotations

from functools import partial

from pipeline._docs import docdict as pipeline_docdict
from pipeline._docs import fill_doc as pipeline_fill_doc

__all__ = ["docdict", "fill_doc"]

docdict: dict[str, str] = dict(pipeline_docdict)

docdict["output_dir"] = """output_dir : Path
        Root of the msica derivatives."""

docdict["dataset_links"] = """dataset_links : dict, optional
        Input dataset names and roots, for the ``Sources`` URIs of sidecars."""

docdict["participants_file"] = """participants_file : str, optional
        ``participants.tsv``, joined to the table."""

docdict["mem_gb"] = """mem_gb : float
        Memory the nodes holding the whole run declare to Nipype's scheduler
        (:func:`workflows.execution.memory.run_mem_gb`)."""

docdict["wf_name"] = """name : str
        Workflow name."""

docdict["denoised_inputs"] = """Inputs
    ------
    denoised_file
        Denoised BOLD of the run.
    sample_mask
        Indices of the volumes kept by denoising."""

#: Fill a workflow docstring's placeholders from :data:`docdict`.
fill_doc = partial(pipeline_fill_doc, entries=docdict)
