"""What the torch twins of the descriptors share: the neighbour list with integer cell shifts, the
differentiable displacements, and the cutoff functions (the same formulas as ``src/common.hpp``)."""

from __future__ import annotations

import math

import numpy as np
import torch


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


__all__ = ["cutoff_function", "displacements", "neighbor_list"]
