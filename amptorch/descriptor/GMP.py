"""The original's ``from amptorch.descriptor.GMP import GMP``: our GMP with the older ``gmp`` scheme.

``GMP(MCSHs, elements)`` and ``GMPOrderNorm(MCSHs, elements)`` build
:class:`amptorch.descriptors.GMP` through :meth:`GMP.from_amptorch` (the
``fp_params`` reader the trainer uses) and are instances of it. Our GMP
describes every element through its densities, so ``elements`` is kept
(``.elements``) but does not change the fingerprints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from amptorch.descriptors import GMP as _GMP


class OriginalGMPArgs(_GMP):
    """Our GMP from the original's ``(MCSHs, elements)``; subclasses set ``scheme``."""

    scheme = "gmp"
    descriptor_type = "GMP"

    def __init__(self, MCSHs: Mapping, elements: Sequence[str] = ()):  # noqa: N803 (the original's name)
        built = _GMP.from_amptorch(MCSHs, fp_scheme=self.scheme)
        self.__dict__.update(built.__dict__)  # the one constructor (from_amptorch) built every field
        self.MCSHs = MCSHs
        self.elements = list(elements)

    @property
    def descriptor_setup_hash(self) -> str:
        """The original's attribute name for the settings hash (ours: :meth:`hash`)."""
        return self.hash


class GMP(OriginalGMPArgs):
    """:class:`amptorch.descriptors.GMP` built from the original's ``GMP(MCSHs, elements)`` (scheme ``gmp``)."""


__all__ = ["GMP"]
