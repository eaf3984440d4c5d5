"""Functional network connectivity: time-course post-processing, static and dynamic FNC."""
