"""Small EMT data sets for the data tests (fast: a few structures of at most 32 atoms)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from amptorch.descriptors import GaussianSF
from amptorch.testing import fcc111_slab, fcc_bulk, isolated_molecule, label_emt


def cu_bulk(seed: int, size=(2, 2, 2)):
    return fcc_bulk("Cu", 3.6, size, rattle=0.05, seed=seed, method="ase")


def cupt_slab(seed: int):
    return fcc111_slab("Cu", (2, 2, 3), 5.0, substitute={0: "Pt", 5: "Pt", 9: "Pt"}, rattle=0.05, seed=seed,
                       method="ase")  # fmt: skip


def water(seed: int):
    return isolated_molecule("H2O", vacuum=4.0, rattle=0.02, seed=seed, method="ase")


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
    return [label_emt(a) for a in frames]  # EMT results frozen, as if read from extxyz


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
