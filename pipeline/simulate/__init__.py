"""SimTB-like simulator of multi-site, multi-scale resting-state fMRI with known ground truth.

``simulate_cohort`` returns arrays only; ``workflows.bids.simulated`` writes them as a
BIDS dataset with fMRIPrep-style derivatives and the truth.
"""

from pipeline.simulate.cohort import SimulatedCohort, SimulatedSubject, simulate_cohort

__all__ = ["SimulatedCohort", "SimulatedSubject", "simulate_cohort"]
