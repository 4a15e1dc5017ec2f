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
    from amptorch.data.geometry import neighbor_images

    return neighbor_images(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)


def displacements(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pair_i: torch.Tensor,
    pair_j: torch.Tensor,
    shifts: torch.Tensor,
    pair_image: torch.Tensor | None = None,
) -> torch.Tensor:
    """(P, 3) d = positions[j] - positions[i] + shifts @ cell, Å: differentiable in positions and cell.

    One structure: ``cell`` (3, 3). A batch: ``cell`` (B, 3, 3) and ``pair_image`` (P,), the structure
    of each image (atoms stacked, pair indices offset), so each image is shifted by its own cell.
    """
    shifts = shifts.to(positions.dtype)
    if cell.dim() == 2:
        offset = shifts @ cell
    else:
        if pair_image is None:
            raise InputError("displacements: a batch of cells (B, 3, 3) needs pair_image (P,)")
        offset = torch.einsum("pk,pkl->pl", shifts, cell.index_select(0, pair_image))
    return positions[pair_j] - positions[pair_i] + offset


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

    ``forward(numbers, positions, cell, pair_i, pair_j, shifts, image=None)`` -> features (N, F) of one
    structure, or of a batch of structures stacked (then ``cell`` is (B, 3, 3) and ``image`` (N,) the
    structure of each atom; pair indices offset by the atoms before their structure):

        numbers: (N,) atomic numbers; positions: (N, 3) Å and cell: (3, 3) Å (rows; any value for
        open axes), both may require grad; pair_i, pair_j: (P,) centre and neighbour of every image
        within the cutoff (j may equal i for a periodic self-image; the centre itself excluded;
        sorted by centre, as :func:`neighbor_list` gives them); shifts: (P, 3) integer cell
        translations of the images; image: (N,) long structure index of each atom (batch only).
    """

    what = "the descriptor's"  # for error messages: "... not among <what> elements"

    def set_elements(self, elements: Sequence[int]) -> None:
        """Tabulate the atomic numbers the twin describes (``species`` buffer: Z -> row, -1 elsewhere)."""
        zs = sorted({int(z) for z in elements})
        species = torch.full((N_Z,), -1, dtype=torch.long)
        species[torch.as_tensor(zs)] = torch.arange(len(zs))
        self.register_buffer("species", species)
        self.elements = zs

    def forward(self, numbers, positions, cell, pair_i, pair_j, shifts, image=None) -> torch.Tensor:
        sp = self.species[numbers]  # (N,)
        if bool((sp < 0).any()):
            bad = sorted({int(z) for z in numbers[sp < 0].tolist()})
            raise InputError(f"numbers: element(s) Z={bad} not among {self.what} elements {self.elements}")
        if cell.dim() == 3 and image is None:
            raise InputError("image: missing; a batch of cells (B, 3, 3) needs the structure index of each atom")
        pair_image = None if cell.dim() == 2 else image.index_select(0, pair_i)
        d = displacements(positions, cell, pair_i, pair_j, shifts, pair_image)  # (P, 3) Å
        return self.features(sp, d, pair_i, pair_j)

    def features(self, species: torch.Tensor, d: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor):
        """(N, F) from the atoms' species rows (N,) and the images' displacements d (P, 3) Å."""
        raise NotImplementedError


__all__ = ["Twin", "cutoff_function", "displacements", "neighbor_list"]
