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


# TEMPORARY (moves into gmp.py / gsf.py)
def _gmp_from_params(fp_params, scheme, elements, cutoff_params):
    return GMP() if fp_params is None else GMP.from_amptorch(fp_params, fp_scheme=scheme)


def _gmp_fused(desc, skin):
    from amptorch.descriptors.gmp_inference import GMPInference

    return GMPInference(desc, skin) if GMPInference.supports(desc) else None


def _gsf_from_params(fp_params, scheme, elements, cutoff_params):
    from amptorch.errors import InputError

    if fp_params is None:
        raise InputError("missing; expected the Gs dict for fp_scheme 'gaussian'")
    keys = [k for k in fp_params if k != "default"]
    return GaussianSF.from_amptorch(fp_params, elements or sorted(keys) or ["H"], cutoff_params)


register(DescriptorEntry("GMP", GMP, ("gmpordernorm", "gmp"), _gmp_from_params, any_element=True, fused=_gmp_fused))
register(DescriptorEntry("GaussianSF", GaussianSF, ("gaussian",), _gsf_from_params, needs_elements=True))
