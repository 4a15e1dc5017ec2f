"""Neighbour entries for the fingerprint kernels, built with vesin.

One entry per (centre i, neighbour image of j) within the cutoff, sorted by
centre then neighbour, plus the (i, j != i) pair blocks that collect every
image of j. Periodic, semi-periodic (pbc per axis) and isolated systems;
cells smaller than the cutoff (many images of one neighbour); any cell shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vesin

from amptorch.errors import InputError, where

MIN_DISTANCE = 0.1  # Å; closer atoms are taken as a broken structure


@dataclass
class NeighborEntries:
    """Centre-sorted neighbour images of a structure (shapes for n atoms, E entries, P pairs).

    Attributes:
        estart: (n + 1,) entries of centre i are estart[i]:estart[i+1].
        ej: (E,) neighbour atom of each entry.
        ed: (E, 3) displacement r_j + S.cell - r_i (Å).
        epair: (E,) pair block of the entry, -1 for periodic self-images.
        pair_i, pair_j: (P,) the pair blocks, sorted by (i, j).
    """

    estart: np.ndarray
    ej: np.ndarray
    ed: np.ndarray
    epair: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray


def check_structure(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, index: int | None = None) -> None:
    """Raise InputError for an empty structure, non-finite positions or a degenerate periodic cell."""
    w = where(index)
    if positions.shape[0] == 0:
        raise InputError(f"{w}atoms: the structure is empty; expected at least one atom")
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        raise InputError(
            f"{w}positions: atom {int(np.flatnonzero(bad)[0])} has a non-finite coordinate; "
            "expected finite positions in Å"
        )
    if pbc.any():
        if not np.isfinite(cell).all():
            raise InputError(f"{w}cell: non-finite cell vectors; expected finite vectors in Å")
        periodic = cell[pbc]
        # Gram determinant of the periodic vectors: zero when they are
        # degenerate (zero length, parallel, or coplanar for a 3D cell).
        gram = np.linalg.det(periodic @ periodic.T)
        scale = np.prod(np.sum(periodic**2, axis=1)) if len(periodic) else 1.0
        if not gram > 1e-12 * max(scale, 1e-300):
            axes = "".join("xyz"[a] for a in np.flatnonzero(pbc))
            raise InputError(
                f"{w}cell: the periodic cell vectors ({axes}) have zero length, area or volume; "
                "expected linearly independent vectors for every periodic axis"
            )


def _box(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> np.ndarray:
    """A box vesin accepts: each non-periodic axis gets a long vector normal to the others.

    Shifts along a non-periodic axis are never requested, so the padded vector
    changes no entry; it only gives vesin a valid cell whatever the user's
    cell holds on that axis (zeros, for a molecule or a slab without vacuum).
    """
    if pbc.all():
        return cell
    if not pbc.any():
        return np.zeros((3, 3))
    box = cell.copy()
    extent = float(np.ptp(positions, axis=0).max())
    length = 2.0 * (extent + cutoff) + 1.0
    chosen = [cell[a] for a in np.flatnonzero(pbc)]
    for a in np.flatnonzero(~pbc):
        # first right-singular vector outside the span of the chosen vectors
        _, _, vt = np.linalg.svd(np.array(chosen), full_matrices=True)
        normal = vt[len(chosen)]
        box[a] = normal * length
        chosen.append(normal)
    if np.linalg.det(box) < 0:
        box[np.flatnonzero(~pbc)[0]] *= -1
    return box


def neighbor_entries(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    index: int | None = None,
) -> NeighborEntries:
    """All neighbour images within ``cutoff`` (Å, strict) of every atom.

    Args:
        positions: (n, 3) Å.
        cell: (3, 3) lattice vectors as rows, Å.
        pbc: (3,) bool, periodic axes.
        cutoff: Å.
        index: structure index for error messages.

    Raises:
        InputError: two atoms (or an atom and its image) closer than 0.1 Å.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    check_structure(positions, cell, pbc, index)
    n = positions.shape[0]
    box = _box(positions, cell, pbc, cutoff)
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    periodic = pbc.tolist() if pbc.any() else False
    i, j, d = nl.compute(points=positions, box=box, periodic=periodic, quantities="ijD")
    # d = r_j - r_i + S.box; S is zero along padded (non-periodic) axes, so
    # this is the displacement in the true cell
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    d = np.asarray(d, dtype=np.float64)
    r2 = np.einsum("ij,ij->i", d, d)
    keep = r2 < cutoff * cutoff
    if not keep.all():
        i, j, d, r2 = i[keep], j[keep], d[keep], r2[keep]
    if len(r2) and r2.min() < MIN_DISTANCE**2:
        k = int(np.argmin(r2))
        what = (
            f"atom {int(i[k])} is {np.sqrt(r2[k]):.3g} Å from its own periodic image"
            if i[k] == j[k]
            else f"atoms {int(i[k])} and {int(j[k])} are {np.sqrt(r2[k]):.3g} Å apart"
        )
        raise InputError(f"{where(index)}positions: {what}; expected at least {MIN_DISTANCE} Å")
    order = np.argsort(i * n + j, kind="stable")
    i, j, d = i[order], j[order], np.ascontiguousarray(d[order])
    estart = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(i, minlength=n), out=estart[1:])
    other = i != j
    new_pair = other.copy()
    new_pair[1:] &= (i[1:] != i[:-1]) | (j[1:] != j[:-1])
    pair_id = np.cumsum(new_pair) - 1
    epair = np.where(other, pair_id, -1).astype(np.int64)
    return NeighborEntries(
        estart=estart,
        ej=j,
        ed=d,
        epair=epair,
        pair_i=i[new_pair],
        pair_j=j[new_pair],
    )
