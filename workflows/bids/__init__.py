"""BIDS in and out: everything that knows file names.

- :mod:`.layout`: the input dataset (pybids layout, participant and run selection,
  filter files, repetition times).
- :mod:`.naming`: msica's output names (the one place that builds or parses them).
- :mod:`.atomic`: atomic writes (no half-written outputs).
- :mod:`.provenance`: sidecars, BIDS URIs, ``dataset_description.json``.
- :mod:`.sink`: the Nipype sink that writes a derivative and its sidecar, and the
  workflow of sinks that the levels' outputs modules build on.
- :mod:`.derivatives`: msica's own derivatives as inputs of later steps.
- :mod:`.participants`: the one reader of ``participants.tsv``.
- :mod:`.validation`: opt-in BIDS validation (``--validate``).
- :mod:`.simulated`: the simulator's cohort written as a BIDS dataset.
"""
