"""Group-level workflow builders.

- :mod:`.base`: QC, feature tables, dFNC states, classifiers and introspection.
- :mod:`.groupica`: data-driven mode: multi-scale group ICA and GICA back-reconstruction.
- :mod:`.predict`: scoring new participants with a saved model (``msica predict``).
"""
