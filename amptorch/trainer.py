"""The original AmpTorch's import path ``from amptorch.trainer import AtomsTrainer``.

The trainer lives in :mod:`amptorch.train`; this module only re-exports it so
scripts written for the original run unchanged.
"""

from amptorch.train.trainer import AtomsTrainer

__all__ = ["AtomsTrainer"]
