"""Models: feature layer (autograd path to forces/stress), SingleNN, BPNN, AtomisticModel and the ensemble mean.

Imports torch, numpy, ``amptorch.data.batch``, ``amptorch.descriptors.record`` (N_Z,
the Voigt order) and ``amptorch.errors`` only.
"""

from amptorch.models.bpnn import BPNN
from amptorch.models.ensemble import MemberMean
from amptorch.models.feature_layer import FeatureFunction, batch_features
from amptorch.models.mlp import build_mlp, resolve_activation
from amptorch.models.network import AtomNetwork
from amptorch.models.potential import AtomisticModel, build_model
from amptorch.models.singlenn import SingleNN

__all__ = [
    "AtomNetwork",
    "AtomisticModel",
    "BPNN",
    "FeatureFunction",
    "MemberMean",
    "SingleNN",
    "batch_features",
    "build_mlp",
    "build_model",
    "resolve_activation",
]
