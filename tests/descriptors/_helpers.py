"""Shared structures and finite-difference helpers for the descriptor tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111, molecule

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"

GMP_PARAMS = {"MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.2, 0.69, 1.1, 1.66, 2.66]}}
GSF_PARAMS = {
    "default": {
        "G2": {"etas": np.logspace(np.log10(0.05), np.log10(5.0), num=4), "rs_s": [0.0]},
        "G4": {"etas": [0.005], "zetas": [1.0, 4.0], "gammas": [1.0, -1.0]},
        "cutoff": 6.0,
    }
}
ALLOY = ["Cu", "Ni", "Co", "Fe", "Cr", "Mn", "Pd", "Pt", "Ag", "Au"]


def load_reference(name: str) -> dict[str, np.ndarray]:
    with np.load(REFERENCE / f"{name}.npz") as d:
        return {k: d[k] for k in d.files}


def reference_atoms(d: dict) -> Atoms:
    return Atoms(numbers=d["numbers"], positions=d["positions_wrapped"], cell=d["cell"], pbc=d["pbc"])


def ethanol() -> Atoms:
    """Isolated molecule, no cell."""
    a = molecule("CH3CH2OH")
    a.positions += np.random.default_rng(1).normal(0, 0.03, a.positions.shape)
    return a


def small_bulk() -> Atoms:
    """Rattled 2-atom triclinic CuNi cell, far smaller than any cutoff used (many images)."""
    a = bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1))
    a.numbers[1] = 28
    a.positions += np.random.default_rng(2).normal(0, 0.08, a.positions.shape)
    return a


def slab() -> Atoms:
    """Pt(111) 2x2x2 with an O adatom, periodic in x, y only."""
    a = fcc111("Pt", size=(2, 2, 2), vacuum=6.0)
    a += Atoms("O", positions=[a.positions[-1] + [0.3, 0.2, 1.9]])
    a.pbc = (True, True, False)
    a.positions += np.random.default_rng(3).normal(0, 0.05, a.positions.shape)
    return a


def alloy() -> Atoms:
    """Rattled 10-element fcc alloy, 16 atoms (every element at least once)."""
    a = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((1, 2, 2))
    rng = np.random.default_rng(4)
    a.set_chemical_symbols([ALLOY[k % 10] for k in rng.permutation(len(a))])
    a.positions += rng.normal(0, 0.06, a.positions.shape)
    return a


def features(desc, atoms: Atoms) -> np.ndarray:
    return desc.compute(atoms, derivatives=False).features


def fd_positions(desc, atoms: Atoms, movers, h: float = 1e-5) -> np.ndarray:
    """Central differences d features / d r_k, (n, F, len(movers), 3)."""
    out = []
    for k in movers:
        cols = []
        for a in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[k, a] += h
            minus.positions[k, a] -= h
            cols.append((features(desc, plus) - features(desc, minus)) / (2 * h))
        out.append(np.stack(cols, axis=-1))
    return np.stack(out, axis=2)


def strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    """Homogeneous strain r -> r (I + eps), cell -> cell (I + eps) (row vectors)."""
    m = np.eye(3) + eps
    out = atoms.copy()
    out.positions = atoms.positions @ m
    out.cell = atoms.cell.array @ m
    return out


def fd_strain(desc, atoms: Atoms, h: float = 1e-5) -> np.ndarray:
    """Central differences d features / d eps_ab, (n, F, 3, 3)."""
    out = np.zeros(features(desc, atoms).shape + (3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            out[..., a, b] = (features(desc, strained(atoms, e)) - features(desc, strained(atoms, -e))) / (
                2 * h
            )
    return out


def max_rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |analytic - numeric| per feature (axis 1), relative to that feature's max |derivative|."""
    diff = np.moveaxis(np.abs(analytic - numeric), 1, 0).reshape(analytic.shape[1], -1).max(axis=1)
    scale = np.moveaxis(np.abs(analytic), 1, 0).reshape(analytic.shape[1], -1).max(axis=1)
    return float((diff / np.maximum(scale, 1e-300)).max())
