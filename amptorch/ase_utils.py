"""The original AmpTorch's import path ``from amptorch.ase_utils import AmpTorch``.

The calculator lives in :mod:`amptorch.calculator`; re-exported here so scripts
written for the original run unchanged.
"""

from amptorch.calculator import AmpTorch, AmpTorchCalculator

__all__ = ["AmpTorch", "AmpTorchCalculator"]
