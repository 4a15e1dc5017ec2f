"""amptorch: fingerprint-based neural-network interatomic potentials.

GMP (Gaussian multipole) and Gaussian symmetry-function fingerprints with
analytic derivatives in C++ (``amptorch.descriptors``), SingleNN and BPNN
models (``amptorch.models``), the skorch ``AtomsTrainer`` that reads the
original AmpTorch's config (``amptorch.train``) and an ASE calculator.
Torch-using parts are imported on first use, so ``import amptorch`` and the
descriptors stay light.
"""

from amptorch.descriptors import GMP, FeatureRecord, GaussianSF
from amptorch.errors import InputError

__version__ = "0.1.0"

_LAZY = {
    "AtomsTrainer": "amptorch.train",
    "TrainedPotential": "amptorch.train",
    "AmpTorchCalculator": "amptorch.calculator",
    "AmpTorch": "amptorch.calculator",
}

__all__ = ["GMP", "GaussianSF", "FeatureRecord", "InputError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'amptorch' has no attribute {name!r}")
