"""Geometry records: structures and labels without fingerprints, for recompute-mode training.

A :class:`GeometryRecord` holds what a torch twin of a descriptor needs to
compute features (and, by autograd, forces and stress) in the training step:
atomic numbers, positions, cell, pbc, labels and the neighbour list (every
image within the cutoff, with integer cell shifts). Nothing per feature or per
pair-feature is stored: ~100 bytes per atom plus 40 per neighbour image while
a batch is built, against ``F * 3 * 8`` bytes per atom pair for stored
derivative blocks.

:class:`GeometryDataset` keeps the geometry and labels of each structure and
builds the neighbour list in ``__getitem__``, so with a DataLoader
(``num_workers > 0``) the workers build them (the issue's on-the-fly data).
``collate`` (``data/batch.py``) stacks geometry records into a :class:`Batch`
with ``positions``, ``cell`` and ``shifts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from torch.utils.data import Dataset

from amptorch.data.io import labels, read_structures
from amptorch.descriptors.base import structure_arrays
from amptorch.descriptors.record import periodic_volume
from amptorch.errors import InputError


@dataclass
class GeometryRecord:
    """One structure for recompute-mode training. n atoms, P neighbour images.

    Attributes:
        numbers: (n,) int64 atomic numbers.
        positions: (n, 3) float64 Å.
        cell: (3, 3) float64 lattice vectors as rows (Å).
        pbc: (3,) bool periodic axes.
        energy: eV, forces (n, 3) eV/Å, stress (6,) Voigt eV/Å^3 (ASE sign): labels when known.
        pair_i, pair_j: (P,) int64 centre and neighbour of every image within the cutoff (periodic
            self-images included, the centre itself not; sorted by centre), or None before
            :meth:`with_neighbors`.
        shifts: (P, 3) float64 integer cell translations of the images.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    pair_i: np.ndarray | None = None
    pair_j: np.ndarray | None = None
    shifts: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def volume(self) -> float | None:
        """Cell volume (Å^3) of a fully periodic structure, else None."""
        return periodic_volume(self.cell, self.pbc)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (neighbour list included once built)."""
        arrays = (self.numbers, self.positions, self.cell, self.pbc, self.forces, self.stress,
                  self.pair_i, self.pair_j, self.shifts)  # fmt: skip
        return int(sum(np.asarray(a).nbytes for a in arrays if a is not None))

    def to_atoms(self):
        """The structure as an ase.Atoms (no calculator)."""
        from ase import Atoms

        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)

    def with_neighbors(self, cutoff: float) -> GeometryRecord:
        """A copy with the neighbour list of every image within ``cutoff`` Å (vesin)."""
        return replace(self, **neighbor_images(self.positions, self.cell, self.pbc, cutoff))


def neighbor_images(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> dict[str, np.ndarray]:
    """Every neighbour image within ``cutoff`` Å (vesin): ``pair_i``, ``pair_j`` (P,) int64 and integer
    ``shifts`` (P, 3) float64, periodic self-images included, the centre itself not; sorted by centre."""
    from amptorch.descriptors.neighbors import neighbor_entries

    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    periodic = np.asarray(pbc, dtype=bool)
    nl = neighbor_entries(positions, cell, periodic, cutoff)
    i = np.repeat(np.arange(len(positions), dtype=np.int64), np.diff(nl.estart))
    j = np.asarray(nl.ej, dtype=np.int64)
    offset = np.asarray(nl.ed) - (positions[j] - positions[i])  # shifts @ cell, Å
    shifts = np.zeros_like(offset)
    if periodic.any() and len(offset):
        # solve shifts @ cell = offset on the periodic axes only (open axes have no lattice vector)
        sol = np.linalg.lstsq(cell[periodic].T, offset.T, rcond=None)[0].T  # (P, n_periodic)
        shifts[:, periodic] = np.rint(sol)
    return {"pair_i": i, "pair_j": j, "shifts": shifts}


def geometry_record(atoms, index: int | None = None, forces: bool = True, stress: bool = False,
                    with_labels: bool = True) -> GeometryRecord:  # fmt: skip
    """The geometry (checked as the descriptors check it) and labels (``amptorch.data.labels``) of an ase.Atoms."""
    numbers, positions, cell, pbc = structure_arrays(atoms, index)
    lab = labels(atoms, index, forces=forces, stress=stress) if with_labels else {}
    return GeometryRecord(
        numbers=np.asarray(numbers, dtype=np.int64),
        positions=np.asarray(positions, dtype=np.float64),
        cell=np.asarray(cell, dtype=np.float64),
        pbc=np.asarray(pbc, dtype=bool),
        energy=lab.get("energy"), forces=lab.get("forces"), stress=lab.get("stress"),
    )  # fmt: skip


class GeometryDataset(Dataset, Sequence):
    """Geometry records of structures; each item's neighbour list is built when it is read.

    ``dataset[k]`` is a :class:`GeometryRecord` with its neighbour list (built in the DataLoader
    worker that reads it); a slice gives a list of them. ``collate`` batches them.

    Args:
        images: a list of ase.Atoms, a file, a glob or anything ``read_structures`` reads, or
            GeometryRecords.
        cutoff: neighbour-list cutoff (Å), the descriptor's.
        forces, stress: labels required (errors name the frame, as ``check_labels``).
        with_labels: False for structures without labels (prediction).
    """

    def __init__(self, images, cutoff: float, forces: bool = True, stress: bool = False,
                 with_labels: bool = True):  # fmt: skip
        if not (isinstance(images, Sequence) and images and all(isinstance(r, GeometryRecord) for r in images)):
            images = read_structures(images)
            images = [geometry_record(a, k, forces, stress, with_labels) for k, a in enumerate(images)]
        self.records = [replace(r, pair_i=None, pair_j=None, shifts=None) for r in images]
        self.cutoff = float(cutoff)
        if not self.cutoff > 0:
            raise InputError(f"cutoff: got {cutoff}; expected a positive number of Å")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        return self.records[index].with_neighbors(self.cutoff)

    @property
    def elements(self) -> list[int]:
        """Sorted atomic numbers present in the data."""
        if not self.records:
            return []
        return [int(z) for z in np.unique(np.concatenate([r.numbers for r in self.records]))]

    @property
    def nbytes(self) -> int:
        """Bytes the dataset holds (geometry and labels; neighbour lists are built per item)."""
        return sum(r.nbytes for r in self.records)


__all__ = ["GeometryDataset", "GeometryRecord", "geometry_record", "neighbor_images"]
