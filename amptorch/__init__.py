"""amptorch: fingerprint-based neural-network interatomic potentials.

GMP (Gaussian multipole) and Gaussian symmetry-function fingerprints with
analytic derivatives in C++ (``amptorch.descriptors``), SingleNN and BPNN
models (``amptorch.models``), the deployable potential and its ASE
calculator (``amptorch.potential``) and the skorch ``AtomsTrainer`` that reads
the original AmpTorch's config (``amptorch.train``). The trainer (and skorch)
is imported on first use, so a deployed potential never loads it.
"""

from amptorch.descriptors import GMP, FeatureRecord, GaussianSF
from amptorch.errors import InputError

__version__ = "0.1.0"

_LAZY = {
    "AtomsTrainer": "amptorch.train",
    "TrainedPotential": "amptorch.potential",
    "AmpTorchCalculator": "amptorch.potential",
    "AmpTorch": "amptorch.potential",
}

__all__ = ["GMP", "GaussianSF", "FeatureRecord", "InputError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'amptorch' has no attribute {name!r}")
