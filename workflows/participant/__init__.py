"""Participant-level workflow builders (one workflow per participant, one sub-workflow per run).

- :mod:`.base`: the participant workflow and the one function that reads the settings.
- :mod:`.denoise`: denoising and QC of a run.
- :mod:`.networks`: back-reconstruction of a run's networks and their static/dynamic FNC.
"""
