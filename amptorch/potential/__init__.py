"""The deployable potential: a trained model (descriptor + scaler + baseline + network),
its checkpoint files, predictions and the ASE calculator.

Imports descriptors, data and models, never ``amptorch.train`` or skorch:
``train`` depends on this package, not the reverse.
"""

from amptorch.potential.calculator import AmpTorch, AmpTorchCalculator, as_potential
from amptorch.potential.metrics import errors
from amptorch.potential.trained import TrainedPotential

__all__ = ["AmpTorch", "AmpTorchCalculator", "TrainedPotential", "as_potential", "errors"]
