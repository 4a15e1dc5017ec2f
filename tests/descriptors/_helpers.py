"""The descriptor tests' structures, settings and reference files.

The structures are presets of the test kit's makers (``amptorch.testing``);
the finite-difference helpers are the kit's, under the names these tests use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from amptorch.testing import ALLOY_ELEMENTS, fcc111_slab, fcc_alloy, fcc_bulk, isolated_molecule
from amptorch.testing import fd_feature_positions as fd_positions  # noqa: F401  (test_derivatives.py imports it from here)
from amptorch.testing import fd_feature_strain as fd_strain  # noqa: F401  (test_derivatives.py imports it from here)
from amptorch.testing import max_rel_error as max_rel_error

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"

GMP_PARAMS = {"MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.2, 0.69, 1.1, 1.66, 2.66]}}
GSF_PARAMS = {
    "default": {
        "G2": {"etas": np.logspace(np.log10(0.05), np.log10(5.0), num=4), "rs_s": [0.0]},
        "G4": {"etas": [0.005], "zetas": [1.0, 4.0], "gammas": [1.0, -1.0]},
        "cutoff": 6.0,
    }
}
ALLOY = list(ALLOY_ELEMENTS)


def load_reference(name: str) -> dict[str, np.ndarray]:
    with np.load(REFERENCE / f"{name}.npz") as d:
        return {k: d[k] for k in d.files}


def reference_atoms(d: dict) -> Atoms:
    return Atoms(numbers=d["numbers"], positions=d["positions_wrapped"], cell=d["cell"], pbc=d["pbc"])


def ethanol() -> Atoms:
    """Isolated molecule, no cell."""
    return isolated_molecule("CH3CH2OH", rattle=0.03, seed=1)


def small_bulk() -> Atoms:
    """Rattled 2-atom triclinic CuNi cell, far smaller than any cutoff used (many images)."""
    return fcc_bulk("Cu", 3.6, (2, 1, 1), cubic=False, substitute={1: "Ni"}, rattle=0.08, seed=2)


def slab() -> Atoms:
    """Pt(111) 2x2x2 with an O adatom, periodic in x, y only."""
    return fcc111_slab("Pt", (2, 2, 2), 6.0, adsorbate=("O", (0.3, 0.2, 1.9)), rattle=0.05, seed=3)


def alloy() -> Atoms:
    """Rattled 10-element fcc alloy, 16 atoms (every element at least once)."""
    return fcc_alloy(ALLOY_ELEMENTS, 3.7, (1, 2, 2), rattle=0.06, seed=4)
