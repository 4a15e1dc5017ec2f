"""Fingerprints: GMP and Gaussian symmetry functions (C++ kernels in ``src/``).

Knows nothing of torch; the only output is :class:`FeatureRecord`. Each
descriptor registers itself in :mod:`amptorch.descriptors.registry`, which the
config, trainer, checkpoints, CLI and calculator ask.
"""

from amptorch.descriptors.base import Descriptor
from amptorch.descriptors.gmp import GMP, default_cutoff
from amptorch.descriptors.gsf import GaussianSF
from amptorch.descriptors.record import FeatureRecord
from amptorch.descriptors.registry import DescriptorEntry, from_settings, register

__all__ = [
    "Descriptor", "DescriptorEntry", "GMP", "GaussianSF", "FeatureRecord", "default_cutoff", "from_settings",
    "register",
]  # fmt: skip

