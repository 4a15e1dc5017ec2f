"""Small EMT data sets for the data tests (fast: a few structures of at most 32 atoms)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, fcc111, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from amptorch.descriptors import GaussianSF


def emt_frozen(atoms):
    """Attach EMT results as a SinglePointCalculator (as if read from extxyz)."""
    atoms.calc = EMT()
    res = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        res["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **res)
    return atoms


def cu_bulk(seed: int, size=(2, 2, 2)):
    a = bulk("Cu", "fcc", a=3.6, cubic=True) * size
    a.rattle(0.05, seed=seed)
    return a


def cupt_slab(seed: int):
    s = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    s.numbers[[0, 5, 9]] = 78
    s.info.clear()
    s.rattle(0.05, seed=seed)
    return s


def water(seed: int):
    m = molecule("H2O")
    m.center(vacuum=4.0)
    m.rattle(0.02, seed=seed)
    return m


@pytest.fixture(scope="session")
def descriptor():
    return GaussianSF(
        ["Cu", "Pt", "H", "O"],
        g2=[(0.05, 0.0), (0.5, 0.0)],
        g4=[(0.005, 1.0, 1.0), (0.005, 1.0, -1.0)],
        cutoff=4.5,
    )


@pytest.fixture(scope="session")
def _images():
    frames = [cu_bulk(1), cupt_slab(2), water(3), cu_bulk(4, (1, 1, 2)), cupt_slab(5), water(6)]
    return [emt_frozen(a) for a in frames]


@pytest.fixture
def images(_images):
    """Six labelled structures: Cu bulk (32 and 8 atoms), Cu-Pt slabs (12), H2O (3)."""
    return [_copy(a) for a in _images]


def _copy(a):
    b = a.copy()
    b.calc = SinglePointCalculator(b, **a.calc.results)
    return b


@pytest.fixture(scope="session")
def records(_images, descriptor):
    from amptorch.data import featurize

    return featurize(_images, descriptor, strain=False, progress=False, workers=2)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
