"""Neighbour entries for the fingerprint kernels, built with vesin.

One entry per (centre i, neighbour image of j) within the cutoff, sorted by
centre then neighbour, plus the (i, j != i) pair blocks that collect every
image of j. Periodic, semi-periodic (pbc per axis) and isolated systems;
cells smaller than the cutoff (many images of one neighbour); any cell shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import vesin

from amptorch.errors import InputError, where

MIN_DISTANCE = 0.1  # Å; closer atoms are taken as a broken structure
MAX_OPEN_EXTENT = 1e4  # Å; atoms spread wider along an open axis are refused (vesin's cell list fails)
MAX_NEIGHBORS_PER_ATOM = 1e5  # expected neighbours per atom above which the search is refused
MAX_PAIRS = 5e8  # expected (centre, neighbour image) pairs in one structure above which it is refused


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
        gram = periodic @ periodic.T
        lengths2 = np.diagonal(gram)
        if not np.linalg.det(gram) > 1e-12 * max(float(np.prod(lengths2)), 1e-300):
            axes = "".join("xyz"[a] for a in np.flatnonzero(pbc))
            raise InputError(
                f"{w}cell: the periodic cell vectors ({axes}) have zero length, area or volume; "
                "expected linearly independent vectors for every periodic axis"
            )
        if lengths2.min() < MIN_DISTANCE**2:  # every atom's image along that vector overlaps it
            raise too_close(0, 0, float(lengths2.min()), index)
        heights = _heights(gram)
        a = int(np.argmin(heights))
        if not heights[a] >= MIN_DISTANCE:
            axis = "xyz"[int(np.flatnonzero(pbc)[a])]
            raise InputError(
                f"{w}cell: the periodic cell is {heights[a]:.3g} Å thick across its {axis} vector "
                f"(volume / area of the other periodic vectors); expected at least {MIN_DISTANCE} Å, "
                "the closest distance allowed between an atom and its periodic image"
            )


def _heights(gram: np.ndarray) -> np.ndarray:
    """(d,) distance between the lattice planes across each of d periodic vectors (Å), from their
    Gram matrix G (non-singular): 1 / |reciprocal vector| = 1 / sqrt((G^-1)_aa); the volume over the
    area of the other two (3D), the area over the other length (2D), the length (1D)."""
    return 1.0 / np.sqrt(np.diagonal(np.linalg.inv(gram)))


def expected_neighbors(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> float:
    """Estimated neighbour images per atom within ``cutoff`` (Å): O(n), before any search.

    n atoms over the periodic measure (length, area or volume of the periodic vectors) times the
    cutoff ball of that dimension, times, per open axis, the share of the atoms' extent that a
    cutoff reaches: n * V_d(rc) / |cell_d| * prod_open min(1, 2 rc / extent).
    """
    n = positions.shape[0]
    periodic = cell[pbc]
    d = len(periodic)
    ball = (1.0, 2.0 * cutoff, math.pi * cutoff**2, 4.0 / 3.0 * math.pi * cutoff**3)[d]
    measure = math.sqrt(max(np.linalg.det(periodic @ periodic.T), 0.0)) if d else 1.0
    per_atom = n * ball / measure
    for a in np.flatnonzero(~pbc):
        extent = float(np.ptp(positions[:, a]))
        if extent > 2.0 * cutoff:
            per_atom *= 2.0 * cutoff / extent
    return per_atom


def check_search(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float, index: int | None = None
) -> None:
    """Raise InputError before a neighbour search vesin cannot do or that would not fit in memory.

    Refused: atoms spread wider than MAX_OPEN_EXTENT (or 1e5 cutoffs) along an open axis (vesin's
    cell list crashes the process there), and more than MAX_NEIGHBORS_PER_ATOM expected neighbours
    per atom or MAX_PAIRS in all (``expected_neighbors``; a huge cutoff would hang or exhaust memory).
    """
    w = where(index)
    for a in np.flatnonzero(~pbc):
        extent = float(np.ptp(positions[:, a]))
        limit = min(MAX_OPEN_EXTENT, 1e5 * cutoff)
        if extent > limit:
            raise InputError(
                f"{w}positions: the atoms span {extent:.3g} Å along the open {'xyz'[a]} axis; expected at most "
                f"{limit:.3g} Å (the smaller of 1e4 Å and 1e5 cutoffs); atoms this far apart are a broken structure"
            )
    per_atom = expected_neighbors(positions, cell, pbc, cutoff)
    total = per_atom * positions.shape[0]
    if per_atom > MAX_NEIGHBORS_PER_ATOM or total > MAX_PAIRS:
        raise InputError(
            f"{w}cutoff: {cutoff:g} Å gives about {per_atom:.3g} neighbours per atom ({total:.3g} pairs) "
            f"in this structure; expected at most {MAX_NEIGHBORS_PER_ATOM:.0f} per atom and {MAX_PAIRS:.0f} "
            "in all; use a smaller cutoff (for GMP: smaller sigmas or an explicit cutoff)"
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


def too_close(i: int, j: int, r2: float, index: int | None) -> InputError:
    """The error for atoms i and j (or i and its own image) at r2 < MIN_DISTANCE^2 (Å^2)."""
    what = (
        f"atom {i} is {np.sqrt(r2):.3g} Å from its own periodic image"
        if i == j
        else f"atoms {i} and {j} are {np.sqrt(r2):.3g} Å apart"
    )
    return InputError(f"{where(index)}positions: {what}; expected at least {MIN_DISTANCE} Å")


def _vesin(positions, cell, pbc, cutoff: float, full_list: bool, quantities: str, index: int | None = None):
    """vesin's neighbour list on a box it accepts (see ``_box``); quantities as vesin names them.

    Checked first (``check_search``). Without periodic axes, a cutoff beyond the atoms' diagonal
    finds every pair, so vesin gets the diagonal + 1 Å instead (its cell list slows with cutoff^3
    over the atoms' extent); the caller's own distance filter is unchanged.
    """
    check_search(positions, cell, pbc, cutoff, index)
    if not pbc.any():
        cutoff = min(cutoff, float(np.linalg.norm(np.ptp(positions, axis=0))) + 1.0)
    box = _box(positions, cell, pbc, cutoff)
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=full_list)
    periodic = pbc.tolist() if pbc.any() else False
    return nl.compute(points=positions, box=box, periodic=periodic, quantities=quantities)


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
    i, j, d = _vesin(positions, cell, pbc, cutoff, full_list=True, quantities="ijD", index=index)
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
        raise too_close(int(i[k]), int(j[k]), float(r2[k]), index)
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


class VerletPairs:
    """Half neighbour list (each pair of images once) with a skin, reused between MD steps.

    The list holds every pair within ``cutoff + skin`` when it is built, so
    it still holds every pair within ``cutoff`` until some atom has moved
    more than ``skin / 2`` (Verlet). It is rebuilt when that happens and
    whenever the number of atoms, the cell or pbc change. Consumers compute
    the displacements r_j + shift . cell - r_i themselves and skip pairs at
    r >= cutoff.

    Args:
        cutoff: Å.
        skin: Å, >= 0 (0: rebuild at every call).
    """

    def __init__(self, cutoff: float, skin: float = 0.5):
        if isinstance(skin, bool) or not isinstance(skin, (int, float)) or not (skin >= 0 and np.isfinite(skin)):
            raise InputError(f"skin: got {skin!r}; expected a finite number of Å >= 0")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0  # how many times vesin ran
        self._ref: np.ndarray | None = None  # positions at the last build
        self._cell: np.ndarray | None = None
        self._pbc: np.ndarray | None = None
        self.pair_i = self.pair_j = self.shift = np.zeros(0, dtype=np.int64)

    def _stale(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> bool:
        if self._ref is None or self.skin == 0 or self._ref.shape != positions.shape:
            return True
        if not (np.array_equal(self._cell, cell) and np.array_equal(self._pbc, pbc)):
            return True
        moved2 = np.einsum("ij,ij->i", positions - self._ref, positions - self._ref).max()
        return not moved2 <= 0.25 * self.skin * self.skin  # NaN positions rebuild (and fail there)

    def update(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, index: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pair_i (P,), pair_j (P,), shift (P, 3)) int64 candidate pairs for these positions (Å).

        Raises:
            InputError: an empty structure, non-finite positions or a degenerate periodic cell
                (checked at every call; the distance check is the consumer's, see ``too_close``).
        """
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        pbc = np.asarray(pbc, dtype=bool).reshape(3)
        check_structure(positions, cell, pbc, index)
        if self._stale(positions, cell, pbc):
            i, j, shift = _vesin(
                positions, cell, pbc, self.cutoff + self.skin, full_list=False, quantities="ijS", index=index
            )
            self.pair_i = np.ascontiguousarray(i, dtype=np.int64)
            self.pair_j = np.ascontiguousarray(j, dtype=np.int64)
            self.shift = np.ascontiguousarray(shift, dtype=np.int64).reshape(-1, 3)
            self._ref, self._cell, self._pbc = positions.copy(), cell.copy(), pbc.copy()
            self.builds += 1
        return self.pair_i, self.pair_j, self.shift
