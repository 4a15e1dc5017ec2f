"""The calculator's import path: ``from amptorch.calculator import AmpTorchCalculator``.

It lives in :mod:`amptorch.potential.calculator`; this module only re-exports it.
"""

from amptorch.potential.calculator import AmpTorch, AmpTorchCalculator, as_potential

__all__ = ["AmpTorch", "AmpTorchCalculator", "as_potential"]
