"""The original's ``from amptorch.descriptor.GMPOrderNorm import GMPOrderNorm``: our GMP (``gmpordernorm``)."""

from __future__ import annotations

from amptorch.descriptor.GMP import OriginalGMPArgs


class GMPOrderNorm(OriginalGMPArgs):
    """:class:`amptorch.descriptors.GMP` built from the original's ``GMPOrderNorm(MCSHs, elements)``."""

    scheme = "gmpordernorm"
    descriptor_type = "GMPOrderNorm"


__all__ = ["GMPOrderNorm"]
