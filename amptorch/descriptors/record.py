"""FeatureRecord: the one object that crosses the descriptor/model boundary.

Every field is a plain numpy array with a documented shape, so records
serialize without pickle (``to_arrays`` / ``from_arrays``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

N_Z = 119  # rows of per-element tables indexed by atomic number (0 unused, 1..118)

# Voigt order of a (3, 3) stress: xx yy zz yz xz xy (ASE's)
VOIGT_ROWS = (0, 1, 2, 1, 0, 0)
VOIGT_COLS = (0, 1, 2, 2, 2, 1)


def periodic_volume(cell: np.ndarray | None, pbc: np.ndarray | None) -> float | None:
    """Cell volume (Å^3) of a structure periodic along all three axes, else None (stress needs it)."""
    if cell is None or pbc is None or not np.all(pbc):
        return None
    return float(abs(np.linalg.det(cell)))


def voigt(stress: np.ndarray) -> np.ndarray:
    """(6,) Voigt stress (xx yy zz yz xz xy) of a (3, 3) tensor; a (6,) input is returned as it is."""
    s = np.asarray(stress, dtype=np.float64)
    return s[list(VOIGT_ROWS), list(VOIGT_COLS)] if s.shape == (3, 3) else s


@dataclass
class FeatureRecord:
    """Fingerprints of one structure and their derivatives.

    n atoms, F features, p atom pairs (i, j != i) within the cutoff.

    Attributes:
        numbers: (n,) int64 atomic numbers.
        features: (n, F) one fixed-length row per atom.
        pair_i, pair_j: (p,) int64 centre atom i and neighbour j != i, one
            entry per atom pair (every periodic image of j is summed in).
        dfeat: (p, F, 3) d features[i] / d r_j in feature units per Å; by
            translation invariance d features[i] / d r_i = -sum_j dfeat.
        dfeat_strain: (n, F, 3, 3) d features[i] / d strain_ab = sum over
            neighbour images of (d features[i] / d r_ij)_a (r_ij)_b.
        energy: total energy (eV), when known.
        forces: (n, 3) eV/Å, when known.
        stress: (6,) Voigt xx yy zz yz xz xy in eV/Å^3 (ASE's sign), when known.
        cell: (3, 3) lattice vectors as rows (Å); stress needs its volume.
        pbc: (3,) bool periodic axes.
    """

    numbers: np.ndarray
    features: np.ndarray
    pair_i: np.ndarray | None = None
    pair_j: np.ndarray | None = None
    dfeat: np.ndarray | None = None
    dfeat_strain: np.ndarray | None = None
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    cell: np.ndarray | None = None
    pbc: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def n_pairs(self) -> int:
        return 0 if self.pair_i is None else int(self.pair_i.shape[0])

    @property
    def volume(self) -> float | None:
        """Cell volume (Å^3) of a fully periodic structure, else None."""
        return periodic_volume(self.cell, self.pbc)

    def dense_dfeat(self) -> np.ndarray:
        """(n, F, n, 3) d features[i] / d r_k, the self term included (for tests)."""
        n, F = self.features.shape
        out = np.zeros((n, F, n, 3), dtype=self.features.dtype)
        if self.dfeat is None:
            raise ValueError("record has no derivatives (computed with derivatives=False)")
        np.add.at(out, (self.pair_i, slice(None), self.pair_j), self.dfeat)
        np.add.at(out, (self.pair_i, slice(None), self.pair_i), -self.dfeat)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for storage (no pickle); absent fields are left out."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = np.asarray(v)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FeatureRecord:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in arrays.items() if k in known}
        if "energy" in kwargs:
            kwargs["energy"] = float(kwargs["energy"])
        return cls(**kwargs)
