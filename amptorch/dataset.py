"""The original AmpTorch's ``from amptorch.dataset import AtomsDataset`` (and ``construct_descriptor``).

``AtomsDataset(images, descriptor_setup, forcetraining, save_fps, scaling,
cores, process)`` featurizes with :class:`amptorch.preprocessing.AtomsToData`
and fits the scalers of :mod:`amptorch.preprocessing`; its items are
:class:`amptorch.preprocessing.DataRecord` (our FeatureRecord, with the
original's ``fingerprint`` / ``atomic_numbers`` tensor views). What differs
from the original: items hold unscaled fingerprints and energies in eV (our
models apply the fitted scaler tables themselves), derivatives are pair
blocks rather than a sparse ``fprimes`` matrix, and there is no
``DataCollater`` (our batches are :func:`amptorch.data.collate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch.utils.data import Dataset

from amptorch.descriptor.Gaussian import Gaussian
from amptorch.descriptor.GMP import GMP
from amptorch.descriptor.GMPOrderNorm import GMPOrderNorm
from amptorch.descriptors import Descriptor
from amptorch.descriptors.registry import by_scheme
from amptorch.errors import InputError
from amptorch.preprocessing import AtomsToData, DataRecord, FeatureScaler, TargetScaler, as_descriptor

DEFAULT_SCALING = {"type": "normalize", "range": (0, 1), "threshold": 1e-6}


def construct_descriptor(descriptor_setup: Sequence) -> Descriptor:
    """Our descriptor from the original's ``(fp_scheme, fp_params, cutoff_params, elements)``.

    Built through the descriptor registry, as the trainer builds it;
    ``fp_params`` may also be a descriptor or a ``GaussianDescriptorSet``.
    """
    try:
        fp_scheme, fp_params, cutoff_params, elements = descriptor_setup
    except (TypeError, ValueError):
        raise InputError("expected (fp_scheme, fp_params, cutoff_params, elements)", "descriptor_setup") from None
    if isinstance(fp_params, Descriptor) or hasattr(fp_params, "to_descriptor"):
        return as_descriptor(fp_params)
    scheme = str(fp_scheme).lower()
    cutoff = {str(k).lower(): v for k, v in cutoff_params.items()} if isinstance(cutoff_params, Mapping) else {}
    elements = [str(e) for e in elements]
    try:
        if scheme == "gaussian":  # the original-named classes, with descriptor_setup and its hash
            return Gaussian(fp_params, elements, cutoff.get("cutoff_func", "cosine"), cutoff.get("gamma"))
        if scheme in ("gmp", "gmpordernorm") and fp_params is not None:
            return (GMP if scheme == "gmp" else GMPOrderNorm)(fp_params, elements)
        return by_scheme(scheme).from_params(fp_params, scheme, elements, cutoff or None)
    except InputError as err:
        raise err.within("descriptor_setup") from None


class AtomsDataset(Dataset):
    """Featurized structures with fitted scalers, the original's signature.

    Args:
        images: ase.Atoms with energies (and forces for ``forcetraining``).
        descriptor_setup: (fp_scheme, fp_params, cutoff_params, elements).
        forcetraining: read forces and compute fingerprint derivatives.
        save_fps: cache fingerprints under ``./processed``.
        scaling: the feature scaling (``type``, ``range``, ``elementwise``, ``threshold``).
        cores: featurizing threads.
        process: featurize and fit the scalers now (else ``data_list`` is None).

    Attributes:
        descriptor, data_list (records), feature_scaler, target_scaler, input_dim, elements.
    """

    def __init__(self, images, descriptor_setup, forcetraining: bool = True, save_fps: bool = True,
                 scaling: Mapping | None = None, cores: int = 1, process: bool = True):  # fmt: skip
        self.images = images
        self.forcetraining = forcetraining
        self.scaling = dict(DEFAULT_SCALING if scaling is None else scaling)
        self.descriptor = construct_descriptor(descriptor_setup)
        self.elements = list(descriptor_setup[3])
        self.a2d = AtomsToData(self.descriptor, r_energy=True, r_forces=forcetraining, save_fps=save_fps,
                               fprimes=forcetraining, cores=cores)  # fmt: skip
        self.feature_scaler: FeatureScaler | None = None
        self.target_scaler: TargetScaler | None = None
        self.data_list: list[DataRecord] | None = self.process() if process else None

    def process(self) -> list[DataRecord]:
        """Featurize the images and fit the scalers (records stay unscaled: the model scales)."""
        data_list = self.a2d.convert_all(self.images, disable_tqdm=True)
        self.feature_scaler = FeatureScaler(data_list, self.forcetraining, self.scaling)
        self.target_scaler = TargetScaler(data_list, self.forcetraining)
        return data_list

    @property
    def input_dim(self) -> int:
        return self.descriptor.length

    def __len__(self) -> int:
        return 0 if self.data_list is None else len(self.data_list)

    def __getitem__(self, index: int) -> DataRecord:
        if self.data_list is None:
            raise InputError("not processed; call process() first (AtomsDataset(..., process=False))", "dataset")
        return self.data_list[index]


__all__ = ["AtomsDataset", "construct_descriptor"]
