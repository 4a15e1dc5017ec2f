"""amptorch: fingerprint-based neural-network interatomic potentials.

GMP (Gaussian multipole) and Gaussian symmetry-function fingerprints with
analytic derivatives in C++ (``amptorch.descriptors``).
"""

from amptorch.descriptors import GMP, FeatureRecord, GaussianSF
from amptorch.errors import InputError

__version__ = "0.1.0"

__all__ = ["GMP", "GaussianSF", "FeatureRecord", "InputError", "__version__"]
