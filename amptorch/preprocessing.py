"""The original AmpTorch's ``from amptorch.preprocessing import AtomsToData, FeatureScaler, TargetScaler``.

Adapters over our data layer (nothing is implemented twice):

* ``AtomsToData(descriptor, r_energy, r_forces, save_fps, fprimes, cores)``
  featurizes with :func:`amptorch.data.featurize`. ``convert(atoms, idx)``
  and ``convert_all(images)`` return :class:`DataRecord` objects — our
  :class:`amptorch.data.FeatureRecord` (what our datasets, ``write_lmdb`` and
  the trainer take) with the original's torch_geometric ``Data`` names as
  read-only views: ``fingerprint`` (n, F) and ``atomic_numbers`` (n,) tensors,
  ``num_nodes``. There is no sparse ``fprimes``: derivatives are the pair
  blocks ``pair_i``, ``pair_j``, ``dfeat`` (p, F, 3).
* ``FeatureScaler(data_list, forcetraining, scaling)`` fits our
  :class:`amptorch.data.FeatureScaler` (``.scaler``); ``TargetScaler(data_list,
  forcetraining)`` fits our :class:`amptorch.data.EnergyBaseline`
  (``.baseline``: per-element reference energies and an energy scale, not a
  mean and std of total energies).
* ``norm(data_list)`` returns the records unchanged: our models apply the
  fitted tables inside the model (``AtomisticModel``), so records stay in
  fingerprint and eV units and one LMDB serves any scaling. The trainer fits
  both on its training split; ``to_dict()`` gives JSON to keep them in an
  LMDB's metadata (``write_lmdb(..., metadata=...)``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from amptorch.data import EnergyBaseline, featurize
from amptorch.data import FeatureScaler as _FeatureScaler
from amptorch.descriptors import Descriptor, FeatureRecord
from amptorch.errors import InputError


@dataclass
class DataRecord(FeatureRecord):
    """A FeatureRecord that also answers to the original's torch_geometric ``Data`` names."""

    @property
    def fingerprint(self) -> torch.Tensor:
        """(n, F) fingerprints as a tensor (shares memory with ``features``)."""
        return torch.from_numpy(np.asarray(self.features))

    @property
    def atomic_numbers(self) -> torch.Tensor:
        """(n,) int64 atomic numbers as a tensor."""
        return torch.from_numpy(np.asarray(self.numbers, dtype=np.int64))

    @property
    def num_nodes(self) -> int:
        return self.n_atoms

    @classmethod
    def of(cls, record: FeatureRecord) -> DataRecord:
        return cls(**{f.name: getattr(record, f.name) for f in fields(FeatureRecord)})


def as_descriptor(descriptor) -> Descriptor:
    """Our descriptor from one of ours, the original-named adapters or a ``GaussianDescriptorSet``."""
    if isinstance(descriptor, Descriptor):
        return descriptor
    if hasattr(descriptor, "to_descriptor"):
        return descriptor.to_descriptor()
    raise InputError(f"got {type(descriptor).__name__}; expected a GMP, GaussianSF or GaussianDescriptorSet",
                     "descriptor")  # fmt: skip


class AtomsToData:
    """Structures -> records with the original's arguments.

    Args:
        descriptor: a descriptor (``GMPOrderNorm(...)``, ``Gaussian(...)``, our GMP / GaussianSF).
        r_energy, r_forces: read (and check) the energy / forces of each structure.
        save_fps: cache fingerprints under ``./processed`` (npz, keyed by settings), as the original's
            ``./processed`` folder.
        fprimes: compute fingerprint derivatives (needed to train on forces).
        cores: featurizing threads.
    """

    def __init__(self, descriptor, r_energy: bool = False, r_forces: bool = False, save_fps: bool = True,
                 fprimes: bool = True, cores: int = 1):  # fmt: skip
        self.descriptor = as_descriptor(descriptor)
        self.r_energy = r_energy
        self.r_forces = r_forces
        self.save_fps = save_fps
        self.fprimes = fprimes
        self.cores = cores

    def _run(self, images: Sequence, indices: Sequence[int], progress: bool) -> list[DataRecord]:
        records = featurize(
            images, self.descriptor, derivatives=bool(self.fprimes), dtype=np.float64, workers=self.cores,
            progress=progress, cache_dir=os.path.join(".", "processed") if self.save_fps else None,
            with_labels=bool(self.r_energy or self.r_forces), forces=bool(self.r_forces), indices=indices,
        )  # fmt: skip
        return [DataRecord.of(r) for r in records]

    def convert(self, atoms, idx: int = 0) -> DataRecord:
        """One structure's record (``idx`` is named in error messages)."""
        return self._run([atoms], [idx], progress=False)[0]

    def convert_all(self, atoms_collection, disable_tqdm: bool = False) -> list[DataRecord]:
        """Records of a list of ase.Atoms, an ase trajectory or an ase database (its rows)."""
        if hasattr(atoms_collection, "select"):  # an ase.db database
            images = [row.toatoms(add_additional_information=False) for row in atoms_collection.select()]
        else:
            images = list(atoms_collection)
        return self._run(images, list(range(len(images))), progress=not disable_tqdm)


class _Fitted:
    """The original's scaler interface over one of our fitted objects (``_fitted``): ``norm`` leaves records
    unchanged (the model applies it), ``to_dict`` is its JSON, equal JSON means equal scalers."""

    _fitted: _FeatureScaler | EnergyBaseline

    def norm(self, data_list, disable_tqdm: bool = False):
        return data_list

    def to_dict(self) -> dict:
        return self._fitted.to_dict()

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None

    # Pickled as JSON-like state (no numpy objects), so ``torch.load(path)`` with torch's default
    # ``weights_only=True`` reads the original's ``torch.save({"feature": ..., "target": ...})`` files
    # (both classes are registered with torch.serialization.add_safe_globals below).
    def __getstate__(self) -> dict:
        return {"forcetraining": bool(self.forcetraining), "fitted": self.to_dict()}

    def __setstate__(self, state: dict) -> None:
        self._set(bool(state["forcetraining"]), self._kind.from_dict(state["fitted"]))


class FeatureScaler(_Fitted):
    """The original's ``FeatureScaler(data_list, forcetraining, scaling)``: fits our FeatureScaler (``.scaler``)."""

    _kind = _FeatureScaler

    def __init__(self, data_list: Sequence[FeatureRecord], forcetraining: bool = True,
                 scaling: Mapping | None = None):  # fmt: skip
        self._set(forcetraining, _FeatureScaler.from_config(dict(scaling or {})).fit(list(data_list)))

    def _set(self, forcetraining: bool, scaler: _FeatureScaler) -> None:
        self.forcetraining = forcetraining
        self.scaler = self._fitted = scaler
        self.transform = scaler.kind
        self.elementwise = scaler.elementwise


class TargetScaler(_Fitted):
    """The original's ``TargetScaler(data_list, forcetraining)``: fits our EnergyBaseline (``.baseline``).

    ``denorm`` returns its input: the model adds the baseline itself and predicts in eV.
    """

    _kind = EnergyBaseline

    def __init__(self, data_list: Sequence[FeatureRecord], forcetraining: bool = True):
        self._set(forcetraining, EnergyBaseline().fit(list(data_list)))

    def _set(self, forcetraining: bool, baseline: EnergyBaseline) -> None:
        self.forcetraining = forcetraining
        self.baseline = self._fitted = baseline

    def denorm(self, tensor, pred: str = "energy"):
        return tensor


torch.serialization.add_safe_globals([FeatureScaler, TargetScaler])

__all__ = ["AtomsToData", "DataRecord", "FeatureScaler", "TargetScaler", "as_descriptor"]
