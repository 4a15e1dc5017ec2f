"""The original AmpTorch's ``amptorch.descriptor`` package: import paths only.

``amptorch.descriptor.Gaussian`` (``Gaussian``, ``GaussianDescriptorSet``,
``GDS``), ``amptorch.descriptor.GMP`` (``GMP``) and
``amptorch.descriptor.GMPOrderNorm`` (``GMPOrderNorm``) construct our
descriptors (:mod:`amptorch.descriptors`) from the original's arguments; see
docs/user_guide.md, "Migrating from the original AmpTorch".
"""
