"""Fingerprints: GMP and Gaussian symmetry functions (C++ kernels in ``src/``).

Knows nothing of torch; the only output is :class:`FeatureRecord`.
"""

from amptorch.descriptors.base import Descriptor
from amptorch.descriptors.gmp import GMP, default_cutoff
from amptorch.descriptors.gsf import GaussianSF
from amptorch.descriptors.record import FeatureRecord

__all__ = ["Descriptor", "GMP", "GaussianSF", "FeatureRecord", "default_cutoff", "from_settings"]


def from_settings(settings: dict) -> Descriptor:
    """Rebuild a descriptor from its ``settings()`` dict (as saved in a checkpoint or database)."""
    from amptorch.errors import InputError

    args = dict(settings)
    kind = args.pop("kind", None)
    if kind == "GMP":
        args.pop("table", None)
        return GMP(**args)
    if kind == "GaussianSF":
        return GaussianSF(**args)
    raise InputError(f"descriptor settings: kind {kind!r}; expected 'GMP' or 'GaussianSF'")
