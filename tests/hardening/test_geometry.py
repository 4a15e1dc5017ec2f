"""Geometry guards before any neighbour search (descriptors/neighbors.py): thin periodic cells, huge
cutoffs, atoms too far apart. Each used to hang vesin (> 10 min), exhaust memory, raise a raw
RuntimeError or kill Python with SIGFPE; each now is one InputError line, checked in a subprocess
with a timeout so that a regression fails instead of hanging or crashing the run."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule

from amptorch.descriptors.neighbors import (
    MAX_NEIGHBORS_PER_ATOM,
    VerletPairs,
    expected_neighbors,
    neighbor_entries,
)
from amptorch.errors import InputError

from .conftest import isolated, one_line

GMP_SMALL = "GMP(orders=[0, 1], sigmas=[0.5, 1.0], smooth_cutoff='cosine'"


def test_flat_periodic_cell_is_refused_at_once():
    """c = (2.5, 2.5, 1e-3) Å: a cell 1e-3 Å thick (vesin ran > 10 minutes on it)."""
    out = isolated(
        f"""
        from ase import Atoms
        from amptorch.descriptors.gmp import GMP
        atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=[[5, 0, 0], [0, 5, 0], [2.5, 2.5, 1e-3]], pbc=True)
        {GMP_SMALL}, cutoff=6.0).compute(atoms)
        """,
        timeout=60,
    )
    assert out["type"] == "InputError"
    one_line(out["message"], "cell:", "0.001 Å thick", "z vector", "at least 0.1 Å")


@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False), (True, False, False)])
def test_thin_cell_along_each_periodic_dimension(pbc):
    """The height check in 3D (volume / area), 2D (area / length) and 1D (length): every periodic case."""
    cell = np.array([[0.05, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=cell, pbc=pbc)
    with pytest.raises(InputError) as info:
        neighbor_entries(atoms.positions, atoms.cell.array, atoms.pbc, 5.0, index=3)
    one_line(info.value, "structure 3:", "positions", "own periodic image", "0.1")
    # long vectors, small height: a sheared cell whose vectors are all > 0.1 Å
    sheared = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [2.0, 2.0, 0.03]])
    atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=sheared, pbc=True)
    with pytest.raises(InputError) as info:
        neighbor_entries(atoms.positions, atoms.cell.array, atoms.pbc, 5.0)
    one_line(info.value, "cell:", "0.03 Å thick", "z vector", "0.1 Å")


def test_huge_cutoff_on_bulk_is_refused():
    """Cutoff 1e3 Å on fcc Cu: ~4e8 neighbours per atom (it exhausted memory or raised vesin's RuntimeError)."""
    out = isolated(
        f"""
        from ase.build import bulk
        from amptorch.descriptors.gmp import GMP
        {GMP_SMALL}, cutoff=1e3).compute(bulk("Cu", "fcc", a=3.6, cubic=True))
        """,
        timeout=60,
    )
    assert out["type"] == "InputError"
    one_line(out["message"], "cutoff:", "1000 Å", "neighbours per atom", "at most 100000 per atom")


def test_wide_sigma_with_the_default_cutoff_is_refused_on_bulk():
    """sigma = 1e3 Å: the default cutoff rule gives ~4600 Å; the neighbour bound refuses it (it hung)."""
    out = isolated(
        """
        from ase.build import bulk
        from amptorch.descriptors.gmp import GMP
        GMP(orders=[0, 1], sigmas=[0.5, 1e3]).compute(bulk("Cu", "fcc", a=3.6, cubic=True))
        """,
        timeout=60,
    )
    assert out["type"] == "InputError"
    one_line(out["message"], "cutoff:", "4603.04 Å", "neighbours per atom", "smaller sigmas")


def test_huge_cutoff_on_a_slab_is_refused():
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    with pytest.raises(InputError) as info:
        neighbor_entries(slab.positions, slab.cell.array, slab.pbc, 1e3, index=0)
    one_line(info.value, "structure 0:", "cutoff:", "neighbours per atom")


def test_huge_cutoff_on_a_molecule_is_exact_and_fast():
    """A molecule's neighbours are all its pairs once the cutoff passes its diagonal: cutoff 1e6 Å
    (which hung vesin) gives exactly the entries of cutoff 50 Å, through neighbor_entries and VerletPairs."""
    h2o = molecule("H2O")
    out = isolated(
        """
        from ase.build import molecule
        from amptorch.descriptors.gmp import GMP
        GMP(orders=[0, 1], sigmas=[0.5, 1.0], cutoff=1e6).compute(molecule("H2O"))
        """,
        timeout=60,
    )
    assert out["type"] is None
    big = neighbor_entries(h2o.positions, h2o.cell.array, h2o.pbc, 1e6)
    ref = neighbor_entries(h2o.positions, h2o.cell.array, h2o.pbc, 50.0)
    for name in ("estart", "ej", "ed", "epair", "pair_i", "pair_j"):
        np.testing.assert_array_equal(getattr(big, name), getattr(ref, name))
    assert len(big.ej) == 6  # 3 atoms, every ordered pair
    pairs = VerletPairs(1e6, skin=0.5)
    i, j, shift = pairs.update(h2o.positions, h2o.cell.array, h2o.pbc)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]
    assert not shift.any()


def test_atoms_far_apart_are_refused():
    """Two atoms 1e6 Å apart in a molecule killed Python with SIGFPE inside vesin's cell list."""
    out = isolated(
        f"""
        from ase import Atoms
        from amptorch.descriptors.gmp import GMP
        {GMP_SMALL}, cutoff=6.0).compute(Atoms("H2", positions=[[0, 0, 0], [1e6, 0, 0]]))
        """,
        timeout=60,
    )
    assert out["type"] == "InputError"
    one_line(out["message"], "positions:", "1e+06 Å", "open x axis", "at most 1e+04 Å")


def test_far_apart_is_refused_by_the_calculator_pairs_too():
    """VerletPairs (the calculator's list) runs the same guards, and along the open axis of a slab."""
    pairs = VerletPairs(6.0)
    with pytest.raises(InputError) as info:
        pairs.update(np.array([[0.0, 0, 0], [0, 0, 5e4]]), np.diag([3.0, 3.0, 0.0]), np.array([True, True, False]))
    one_line(info.value, "positions:", "open z axis")
    with pytest.raises(InputError) as info:
        VerletPairs(2e3).update(*(lambda a: (a.positions, a.cell.array, a.pbc))(bulk("Cu", cubic=True)), index=7)
    one_line(info.value, "structure 7:", "cutoff:", "neighbours per atom")
    assert pairs.builds == 0


def test_tiny_cutoff_over_a_wide_molecule_is_refused():
    """vesin's cell list also fails for extent / cutoff >= ~1e5 (0.01 Å cutoff over 2e3 Å)."""
    with pytest.raises(InputError) as info:
        neighbor_entries(np.array([[0.0, 0, 0], [2e3, 0, 0]]), np.zeros((3, 3)), np.zeros(3, bool), 0.01)
    one_line(info.value, "positions:", "1e5 cutoffs")


def test_expected_neighbours_estimate():
    """The estimate is O(n), and within a factor 2 of the true count in bulk (rc 6 Å) and for a cluster."""
    cu = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
    est = expected_neighbors(cu.positions, cu.cell.array, cu.pbc, 6.0)
    true = len(neighbor_entries(cu.positions, cu.cell.array, cu.pbc, 6.0).ej) / len(cu)
    assert 0.5 < est / true < 2.0
    cluster = cu.copy()
    cluster.pbc = False
    est = expected_neighbors(cluster.positions, cluster.cell.array, cluster.pbc, 6.0)
    true = len(neighbor_entries(cluster.positions, cluster.cell.array, cluster.pbc, 6.0).ej) / len(cu)
    assert true < est < 4.0 * true
    # a legitimate large cutoff on bulk is still accepted (Cu, 30 Å: ~3e4 neighbours per atom)
    small = bulk("Cu", "fcc", a=3.6, cubic=True)
    assert expected_neighbors(small.positions, small.cell.array, small.pbc, 30.0) < MAX_NEIGHBORS_PER_ATOM
    neighbor_entries(small.positions, small.cell.array, small.pbc, 30.0)
