"""In-memory dataset of FeatureRecords, and a lazy view of a split of any dataset."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from amptorch.descriptors.record import FeatureRecord
from amptorch.errors import InputError, where


class AtomsDataset(Dataset):
    """A list of FeatureRecords (one per structure) as a torch Dataset.

    ``dataset[k]`` is the k-th FeatureRecord; a DataLoader with
    ``collate_fn=amptorch.data.collate`` batches them.

    Args:
        records: FeatureRecords that share one feature length F.

    Raises:
        InputError: an item that is not a FeatureRecord, or a feature length
            that differs from the first record's (naming the structure).
    """

    def __init__(self, records: Sequence[FeatureRecord]):
        records = list(records)
        n_features = None
        for k, r in enumerate(records):
            if not isinstance(r, FeatureRecord):
                raise InputError(f"{where(k)}record: got {type(r).__name__}; expected a FeatureRecord")
            f = np.asarray(r.features)
            if f.ndim != 2 or f.shape[0] != len(r.numbers):
                raise InputError(f"{where(k)}features: shape {f.shape}; expected ({len(r.numbers)}, F)")
            if n_features is None:
                n_features = f.shape[1]
            elif f.shape[1] != n_features:
                raise InputError(
                    f"{where(k)}features: {f.shape[1]} per atom; expected {n_features} like structure 0"
                )
        self.records = records
        self._n_features = n_features

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> FeatureRecord:
        return self.records[index]

    @property
    def n_features(self) -> int:
        """Features per atom F (0 for an empty dataset)."""
        return int(self._n_features or 0)

    @property
    def elements(self) -> list[int]:
        """Sorted atomic numbers present in the data."""
        if not self.records:
            return []
        return [int(z) for z in np.unique(np.concatenate([np.asarray(r.numbers) for r in self.records]))]

    def subset(self, indices: Sequence[int]) -> AtomsDataset:
        """The records at ``indices`` (e.g. a train or validation split), not copied."""
        return AtomsDataset([self.records[int(i)] for i in indices])


class RecordView(Dataset, Sequence):
    """The records of ``source`` at ``indices``, read on access (nothing held in memory).

    A train or validation split of an :class:`amptorch.data.LmdbDataset`:
    ``view[k]`` reads record ``indices[k]``; a slice gives a list of records.
    Usable as a torch map-style Dataset.
    """

    def __init__(self, source, indices: Sequence[int]):
        self.source = source
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.source[i] for i in self.indices[index]]
        return self.source[self.indices[index]]


__all__ = ["AtomsDataset", "RecordView"]
