"""Fingerprints: GMP and Gaussian symmetry functions (C++ kernels in ``src/``).

Knows nothing of torch; the only output is :class:`FeatureRecord`.
"""

from amptorch.descriptors.base import Descriptor
from amptorch.descriptors.gmp import GMP, default_cutoff
from amptorch.descriptors.gsf import GaussianSF
from amptorch.descriptors.record import FeatureRecord

__all__ = ["Descriptor", "GMP", "GaussianSF", "FeatureRecord", "default_cutoff"]
