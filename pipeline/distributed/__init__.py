"""Multi-site training without pooling data: dsgd, dAD and rank-dAD on ``torch.distributed``."""

from pipeline.distributed.launch import init_local_group, leave, run_from_env, run_local
from pipeline.distributed.modes import MODES, ByteCounter, expected_bytes, low_rank_factors
from pipeline.distributed.training import train_site

__all__ = [
    "MODES",
    "ByteCounter",
    "expected_bytes",
    "init_local_group",
    "leave",
    "low_rank_factors",
    "run_from_env",
    "run_local",
    "train_site",
]
