"""Batches: many FeatureRecords concatenated into flat torch tensors.

Atoms of all structures are stacked (N = sum of n); pair indices are offset
so they index the stacked atoms; ``image`` says which structure each atom
belongs to. No padding, no dense n x n arrays.

Two kinds of batch: of FeatureRecords (stored fingerprints and derivative
blocks) and of :class:`amptorch.data.geometry.GeometryRecord` (geometry and
neighbour images: features are recomputed by a torch twin in the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from amptorch.data.geometry import GeometryRecord
from amptorch.descriptors.record import FeatureRecord
from amptorch.errors import InputError


@dataclass
class Batch:
    """B structures, N atoms, P pairs, F features.

    Attributes:
        numbers: (N,) long atomic numbers.
        features: (N, F) raw (unscaled) fingerprints; None in a geometry batch.
        image: (N,) long structure index of each atom.
        n_atoms: (B,) long atoms per structure.
        pair_i, pair_j: (P,) long stacked atom indices (i centre, j neighbour): atom pairs j != i
            of the derivative blocks, or in a geometry batch every neighbour image (j = i for a
            periodic self-image), shifted by ``shifts``.
        dfeat: (P, F, 3) d features[i] / d r_j, or None.
        dfeat_strain: (N, F, 3, 3) d features[i] / d strain, or None.
        volume: (B,) Å^3, NaN for structures that are not fully periodic.
        energy: (B,) eV, or None when any structure lacks it.
        forces: (N, 3) eV/Å, or None when any structure lacks them.
        stress: (B, 6) Voigt eV/Å^3 (ASE sign), or None when any lacks it.
        positions: (N, 3) Å (geometry batch only).
        cell: (B, 3, 3) Å lattice vectors as rows (geometry batch only).
        shifts: (P, 3) integer cell translations of the neighbour images (geometry batch only).
    """

    numbers: torch.Tensor
    features: torch.Tensor | None
    image: torch.Tensor
    n_atoms: torch.Tensor
    pair_i: torch.Tensor | None = None
    pair_j: torch.Tensor | None = None
    dfeat: torch.Tensor | None = None
    dfeat_strain: torch.Tensor | None = None
    volume: torch.Tensor | None = None
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    cell: torch.Tensor | None = None
    shifts: torch.Tensor | None = None

    @property
    def geometry(self) -> bool:
        """A geometry batch (features recomputed from ``positions``), not stored fingerprints."""
        return self.positions is not None

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.shape[0])

    def to(self, device=None, dtype: torch.dtype | None = None) -> Batch:
        """Move to a device; cast floating tensors to ``dtype`` when given."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                cast = dtype is not None and v.is_floating_point()
                v = v.to(device=device, dtype=dtype if cast else None)
            out[f.name] = v
        return replace(self, **out)

    def targets(self, device=None) -> Batch:
        """The batch without its model inputs (pair blocks, derivative blocks, geometry) on ``device``: what a
        loss or a metric needs after the forward pass has moved the inputs itself."""
        inputs = dict(pair_i=None, pair_j=None, dfeat=None, dfeat_strain=None, positions=None, cell=None, shifts=None)
        return replace(self, **inputs).to(device)

    # skorch slices and counts inputs; a Batch is one unit
    def __len__(self) -> int:
        return self.n_structures


def _own(a: np.ndarray) -> np.ndarray:
    """``a`` itself when torch may wrap it (writable), else a copy (e.g. a view into an LMDB buffer)."""
    return a if a.flags.writeable else a.copy()


def _cat(records: Sequence[FeatureRecord], name: str, dtype=None, offsets=None) -> np.ndarray | None:
    """One field of every record, concatenated (``offsets`` added per record); None if any lacks it.

    A single record is not copied, so a one-structure batch (the calculator's) wraps the record's arrays.
    """
    vals = [getattr(r, name) for r in records]
    if any(v is None for v in vals):
        return None
    if len(vals) == 1:
        return _own(np.asarray(vals[0], dtype=dtype))
    arrays = [np.asarray(v, dtype=dtype) for v in vals]
    if offsets is not None:
        arrays = [a + o for a, o in zip(arrays, offsets, strict=True)]
    return np.concatenate(arrays)


def collate(records: Sequence[FeatureRecord] | Sequence[GeometryRecord]) -> Batch:
    """Concatenate records into one Batch (pairs offset by the atoms before them).

    FeatureRecords give features and derivative blocks; GeometryRecords (each with its neighbour
    list) give positions, cells and neighbour images (``features`` None).
    """
    if records and isinstance(records[0], GeometryRecord):
        return _collate_geometry(records)
    n = np.array([r.n_atoms for r in records], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]])
    t = torch.from_numpy
    features = t(_cat(records, "features"))
    batch = Batch(
        numbers=t(_cat(records, "numbers", np.int64)),
        features=features,
        image=t(np.repeat(np.arange(len(records), dtype=np.int64), n)),
        n_atoms=t(n),
    )
    dfeat = _cat(records, "dfeat")
    if dfeat is not None:
        batch.pair_i = t(_cat(records, "pair_i", np.int64, offsets))
        batch.pair_j = t(_cat(records, "pair_j", np.int64, offsets))
        batch.dfeat = t(dfeat)
    ds = _cat(records, "dfeat_strain")
    if ds is not None:
        batch.dfeat_strain = t(ds)
    _labels(batch, records, features.dtype)
    return batch


def _labels(batch: Batch, records, dtype) -> None:
    """The volumes and labels of ``records`` into ``batch`` (the same for both kinds of record)."""
    t = torch.from_numpy
    vol = [r.volume for r in records]
    batch.volume = torch.tensor([np.nan if v is None else v for v in vol], dtype=dtype)
    if all(r.energy is not None for r in records):
        batch.energy = torch.tensor([r.energy for r in records], dtype=torch.float64)
    f = _cat(records, "forces", np.float64)
    if f is not None:
        batch.forces = t(f.reshape(-1, 3))
    if all(r.stress is not None for r in records):
        batch.stress = t(np.stack([np.asarray(r.stress, dtype=np.float64) for r in records]))


def _collate_geometry(records: Sequence[GeometryRecord]) -> Batch:
    """A geometry batch: stacked positions, (B, 3, 3) cells, neighbour images offset by the atoms before."""
    if any(r.pair_i is None for r in records):
        raise InputError("records: a GeometryRecord without its neighbour list; use record.with_neighbors(cutoff)")
    n = np.array([r.n_atoms for r in records], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]])
    t = torch.from_numpy
    positions = t(_cat(records, "positions", np.float64))
    batch = Batch(
        numbers=t(_cat(records, "numbers", np.int64)),
        features=None,
        image=t(np.repeat(np.arange(len(records), dtype=np.int64), n)),
        n_atoms=t(n),
        pair_i=t(_cat(records, "pair_i", np.int64, offsets)),
        pair_j=t(_cat(records, "pair_j", np.int64, offsets)),
        positions=positions,
        cell=t(np.stack([np.asarray(r.cell, dtype=np.float64) for r in records])),
        shifts=t(_cat(records, "shifts", np.float64).reshape(-1, 3)),
    )
    _labels(batch, records, positions.dtype)
    return batch
