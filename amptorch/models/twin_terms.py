"""What the torch twins of the descriptors share: the neighbour list with integer cell shifts, the
differentiable displacements, and the cutoff functions (the same formulas as ``src/common.hpp``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from amptorch.descriptors.record import N_Z
from amptorch.errors import InputError


def neighbor_list(atoms, cutoff: float) -> dict[str, np.ndarray]:
    """Every neighbour image of an ase.Atoms within ``cutoff`` Å (vesin): ``pair_i``, ``pair_j`` (P,) and
    integer ``shifts`` (P, 3), periodic self-images included, the centre itself not; sorted by centre."""
    from amptorch.descriptors.neighbors import neighbor_entries

    positions = np.asarray(atoms.positions, dtype=np.float64)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    periodic = np.asarray(atoms.pbc, dtype=bool)
    nl = neighbor_entries(positions, cell, periodic, cutoff)
    i = np.repeat(np.arange(len(positions)), np.diff(nl.estart))
    j = np.asarray(nl.ej)
    offset = np.asarray(nl.ed) - (positions[j] - positions[i])  # shifts @ cell, Å
    shifts = np.zeros_like(offset)
    if periodic.any():
        # solve shifts @ cell = offset on the periodic axes only (open axes have no lattice vector)
        sol = np.linalg.lstsq(cell[periodic].T, offset.T, rcond=None)[0].T  # (P, n_periodic)
        shifts[:, periodic] = np.rint(sol)
    return {"pair_i": i.astype(np.int64), "pair_j": j.astype(np.int64), "shifts": shifts}


def displacements(
    positions: torch.Tensor, cell: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor, shifts: torch.Tensor
) -> torch.Tensor:
    """(P, 3) d = positions[j] - positions[i] + shifts @ cell, Å: differentiable in positions and cell."""
    return positions[pair_j] - positions[pair_i] + shifts.to(positions.dtype) @ cell


def cutoff_function(r: torch.Tensor, cutoff: float, kind: str | None, gamma: float = 2.0) -> torch.Tensor:
    """fc(r), 0 at and beyond ``cutoff`` Å: ``kind`` None (1 inside: a hard cutoff), "cosine"
    (0.5 (1 + cos(pi r / rc))) or "polynomial" (1 + gamma x^(gamma+1) - (gamma+1) x^gamma, x = r / rc)."""
    inside = r < cutoff
    if kind is None:
        return inside.to(r.dtype)
    x = torch.where(inside, r / cutoff, torch.zeros_like(r))
    if kind == "cosine":
        fc = 0.5 * (1.0 + torch.cos(math.pi * x))
    else:
        fc = 1.0 + gamma * x ** (gamma + 1.0) - (gamma + 1.0) * x**gamma
    return torch.where(inside, fc, torch.zeros_like(fc))


class Twin(nn.Module):
    """Base of the torch twins: the species table and the call; a twin implements ``features``.

    ``forward(numbers, positions, cell, pair_i, pair_j, shifts)`` -> features (N, F) of one structure:

        numbers: (N,) atomic numbers; positions: (N, 3) Å and cell: (3, 3) Å (rows; any value for
        open axes), both may require grad; pair_i, pair_j: (P,) centre and neighbour of every image
        within the cutoff (j may equal i for a periodic self-image; the centre itself excluded;
        sorted by centre, as :func:`neighbor_list` gives them); shifts: (P, 3) integer cell
        translations of the images.
    """

    what = "the descriptor's"  # for error messages: "... not among <what> elements"

    def set_elements(self, elements: Sequence[int]) -> None:
        """Tabulate the atomic numbers the twin describes (``species`` buffer: Z -> row, -1 elsewhere)."""
        zs = sorted({int(z) for z in elements})
        species = torch.full((N_Z,), -1, dtype=torch.long)
        species[torch.as_tensor(zs)] = torch.arange(len(zs))
        self.register_buffer("species", species)
        self.elements = zs

    def forward(self, numbers, positions, cell, pair_i, pair_j, shifts) -> torch.Tensor:
        sp = self.species[numbers]  # (N,)
        if bool((sp < 0).any()):
            bad = sorted({int(z) for z in numbers[sp < 0].tolist()})
            raise InputError(f"numbers: element(s) Z={bad} not among {self.what} elements {self.elements}")
        d = displacements(positions, cell, pair_i, pair_j, shifts)  # (P, 3) Å
        return self.features(sp, d, pair_i, pair_j)

    def features(self, species: torch.Tensor, d: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor):
        """(N, F) from the atoms' species rows (N,) and the images' displacements d (P, 3) Å."""
        raise NotImplementedError


__all__ = ["Twin", "cutoff_function", "displacements", "neighbor_list"]
