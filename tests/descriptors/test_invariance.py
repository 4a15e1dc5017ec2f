"""Symmetries of the fingerprints, and their behaviour at the cutoff."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from amptorch.descriptors import GMP, GaussianSF
from amptorch.testing import assert_close_rel, image_shifted, permuted, random_rotation, rotated, translated

from ._helpers import ethanol, slab, small_bulk

TOL = 1e-10
assert_same = partial(assert_close_rel, rtol=TOL)


def descriptors_for(atoms: Atoms):
    elements = sorted(set(atoms.get_chemical_symbols()))
    return [
        GMP(orders=[0, 1, 2, 3, 4], sigmas=[0.4, 1.0], cutoff=6.0),
        GMP(orders=[0, 2, 3], sigmas=[0.5, 1.2], cutoff=5.5, smooth_cutoff="cosine", square=False),
        GaussianSF(elements, g2=[(0.1, 0.0), (0.5, 2.0)], g4=[(0.01, 1.0, 1.0), (0.02, 2.0, -1.0)],
                   g5=[(0.01, 1.0, -1.0)], cutoff=5.0),
    ]  # fmt: skip


STRUCTURES = {"molecule": ethanol, "bulk": small_bulk, "slab": slab}


def full(desc, atoms):
    return desc.compute(atoms, derivatives=True, strain=True)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_rotation(name):
    atoms = STRUCTURES[name]()
    R = random_rotation(0)
    rot = rotated(atoms, R)
    for desc in descriptors_for(atoms):
        a, b = full(desc, atoms), full(desc, rot)
        assert_same(a.features, b.features, f"{desc} features")
        np.testing.assert_array_equal(a.pair_i, b.pair_i)
        np.testing.assert_array_equal(a.pair_j, b.pair_j)
        assert_same(a.dfeat @ R.T, b.dfeat, "dfeat rotates as a vector")
        assert_same(R @ a.dfeat_strain @ R.T, b.dfeat_strain, "dfeat_strain rotates as a tensor")


def test_improper_rotation_gmp_even_and_odd_orders():
    """Inversion r -> -r: GMP features (squares) unchanged; derivatives flip sign."""
    atoms = ethanol()
    inv = atoms.copy()
    inv.positions = -atoms.positions
    desc = GMP(orders=[0, 1, 2, 3], sigmas=[0.5, 1.0], cutoff=6.0)
    a, b = full(desc, atoms), full(desc, inv)
    assert_same(a.features, b.features, "features")
    assert_same(-a.dfeat, b.dfeat, "dfeat")


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_translation(name):
    atoms = STRUCTURES[name]()
    moved = translated(atoms, [13.7, -4.2, 0.9])
    for desc in descriptors_for(atoms):
        a, b = full(desc, atoms), full(desc, moved)
        assert_same(a.features, b.features, "features")
        assert_same(a.dfeat, b.dfeat, "dfeat")
        assert_same(a.dfeat_strain, b.dfeat_strain, "dfeat_strain")


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_permutation(name):
    atoms = STRUCTURES[name]()
    other, perm = permuted(atoms, seed=1)  # never the identity, so every structure is really permuted
    for desc in descriptors_for(atoms):
        a, b = full(desc, atoms), full(desc, other)
        assert_same(a.features[perm], b.features, "features")
        da, db = a.dense_dfeat(), b.dense_dfeat()
        assert_same(da[perm][:, :, perm], db, "dense dfeat blocks")
        assert_same(a.dfeat_strain[perm], b.dfeat_strain, "dfeat_strain")
        assert a.n_pairs == b.n_pairs


def test_supercell_has_the_same_per_atom_features():
    atoms = small_bulk()
    sc = atoms.repeat((2, 2, 2))
    for desc in descriptors_for(atoms):
        a, b = full(desc, atoms), full(desc, sc)
        assert_same(np.tile(a.features, (8, 1)), b.features, "features")
        assert_same(np.tile(a.dfeat_strain, (8, 1, 1, 1)), b.dfeat_strain, "dfeat_strain")
        # moving atom p of the small cell moves all 8 of its copies in the supercell
        n = len(atoms)
        summed = b.dense_dfeat().reshape(8 * n, desc.length, 8, n, 3).sum(axis=2)
        assert_same(np.tile(a.dense_dfeat(), (8, 1, 1, 1)), summed, "dfeat summed over copies")


@pytest.mark.parametrize("name", ["bulk", "slab"])
def test_wrapping_by_lattice_vectors(name):
    atoms = STRUCTURES[name]()
    shifted = image_shifted(atoms, seed=2, max_shift=2)
    for desc in descriptors_for(atoms):
        a, b = full(desc, atoms), full(desc, shifted)
        assert_same(a.features, b.features, "features")
        assert_same(a.dfeat, b.dfeat, "dfeat")
        assert_same(a.dfeat_strain, b.dfeat_strain, "dfeat_strain")


def test_triclinic_cell_equals_equivalent_cells():
    """The same crystal in a strongly sheared cell (unimodular change of basis) and in a supercell."""
    atoms = small_bulk()  # fcc primitive vectors: already non-orthogonal
    m = np.array([[1, 0, 0], [2, 1, 0], [-1, 3, 1]])  # det 1
    skew = atoms.copy()
    skew.cell = m @ atoms.cell.array
    skew.wrap()
    angles = skew.cell.cellpar()[3:]
    assert np.abs(angles - 90).max() > 40  # far from orthogonal
    for desc in descriptors_for(atoms):
        a, b = full(desc, atoms), full(desc, skew)
        assert_same(a.features, b.features, "features")
        assert_same(a.dfeat_strain, b.dfeat_strain, "dfeat_strain")
        assert_same(a.dense_dfeat(), b.dense_dfeat(), "dense dfeat")


def test_fcc_primitive_cell_equals_cubic_cell():
    prim = bulk("Cu", "fcc", a=3.6)
    cubic = bulk("Cu", "fcc", a=3.6, cubic=True)
    desc = GMP(orders=[0, 2, 4], sigmas=[0.5, 1.2], cutoff=7.0)
    a, b = desc.compute(prim, derivatives=False), desc.compute(cubic, derivatives=False)
    assert_same(np.tile(a.features, (4, 1)), b.features, "features")
    assert a.features[0, 4] > 1e-6 * a.features[0, 0]  # order 4 is non-zero in a cubic crystal


# -- behaviour at the cutoff ------------------------------------------------------------------------


def crossing(desc, make, r_cut: float, delta: float = 1e-7):
    """Jumps in features and derivatives as a distance goes from r_cut - delta to r_cut + delta.

    Other distances change smoothly meanwhile; that first-order change (derivatives times the
    displacement) is taken out, so what is left is the discontinuity (plus O(delta^2)).
    Returns (feature jump, derivative change, strain-derivative change, the inside record).
    """
    a, b = make(r_cut - delta), make(r_cut + delta)
    ra, rb = full(desc, a), full(desc, b)
    da, db = ra.dense_dfeat(), rb.dense_dfeat()
    step = b.positions - a.positions
    linear = 0.5 * np.einsum("ifka,ka->if", da + db, step)
    return rb.features - ra.features - linear, db - da, rb.dfeat_strain - ra.dfeat_strain, ra


@pytest.mark.parametrize("cutoff_fn", ["cosine", "polynomial"])
def test_gsf_continuous_across_the_cutoff(cutoff_fn):
    rc = 4.5
    desc = GaussianSF(["H", "O"], g2=[(0.05, 0.0), (0.3, 2.0)], g4=[(0.01, 1.0, 1.0), (0.01, 2.0, -1.0)],
                      g5=[(0.02, 1.0, 1.0)], cutoff=rc, cutoff_fn=cutoff_fn, gamma=2.0)  # fmt: skip
    u = np.array([0.3, -0.5, 0.81])
    u /= np.linalg.norm(u)

    def radial(r):  # atom 2 crosses R_02 = rc
        return Atoms("OHH", positions=[[0, 0, 0], [0.97, 0.1, 0.0], u * r])

    def pair(r):  # atoms 1, 2 within rc of atom 0, R_12 crosses rc (the G4 R_jk factor)
        half = np.sqrt(3.9**2 - (r / 2) ** 2)
        return Atoms("OHH", positions=[[0, 0, 0], [r / 2, half, 0.2], [-r / 2, half, -0.2]])

    for make, r_cut in ((radial, rc), (pair, np.sqrt(rc**2 - 0.4**2))):
        jump, djump, sjump, rec = crossing(desc, make, r_cut)
        assert np.abs(jump).max() < 1e-12
        assert np.abs(djump).max() < 1e-6
        assert np.abs(sjump).max() < 1e-6
        # the same measure over a 1 Å step is far from zero: the crossing term matters near rc
        jump_far, _, _, _ = crossing(desc, make, r_cut - 0.5, delta=0.5)
        assert np.abs(jump_far).max() > 1e-4


def _probe_cluster():
    cl = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    cl.pbc = False
    cl.cell = np.zeros((3, 3))
    cl.positions += np.random.default_rng(5).normal(0, 0.05, cl.positions.shape)
    cl.positions -= cl.positions[0]
    u = np.array([-1.0, -0.7, -0.4])
    u /= np.linalg.norm(u)  # away from the cluster: only atom 0 sees the probe atom near the cutoff

    def make(r):
        out = cl.copy()
        out += Atoms("Cu", positions=[u * r])
        return out

    return cl, make


def test_gmp_jump_at_the_default_cutoff_is_tiny():
    """The original's default cutoff: the widest order-0 probe has decayed to 1e-8 there.

    Order 0 jumps by < 1e-8 of the feature's scale (its largest value in the cluster). Higher
    orders weight the far neighbour by ~r^n, so their jump at the same cutoff is larger (up to
    ~5e-6 for order 3, sigma 2.66): a hard cutoff, as in the original; use smooth_cutoff to remove it.
    """
    desc = GMP()
    cl, make = _probe_cluster()
    inside, outside = make(desc.cutoff - 1e-9), make(desc.cutoff + 1e-9)
    fi = desc.compute(inside, derivatives=False).features[0]
    fo = desc.compute(outside, derivatives=False).features[0]
    scale = np.abs(desc.compute(cl, derivatives=False).features).max(axis=0)
    jump = np.abs(fi - fo) / scale
    order = np.array([p[0] for p in desc.probes])
    assert jump[order == 0].max() < 1e-8
    assert jump.max() < 1e-5
    assert jump.max() > 0  # the neighbour is really cut off there (hard cutoff)


@pytest.mark.parametrize("smooth", ["cosine", "polynomial"])
def test_gmp_smooth_cutoff_is_continuous(smooth):
    desc = GMP(orders=[0, 1, 2, 3], sigmas=[0.5, 1.5], cutoff=6.0, smooth_cutoff=smooth)
    _, make = _probe_cluster()
    jump, djump, sjump, rec = crossing(desc, make, 6.0)
    assert np.abs(jump).max() < 1e-12 * np.abs(rec.features).max()
    dscale = np.abs(rec.dense_dfeat()).max()
    assert np.abs(djump).max() < 1e-6 * dscale
    assert np.abs(sjump).max() < 1e-6 * np.abs(rec.dfeat_strain).max()
    # without smoothing the same crossing is a visible jump
    hard = GMP(orders=[0, 1, 2, 3], sigmas=[0.5, 1.5], cutoff=6.0)
    jump, _, _, rec = crossing(hard, make, 6.0)
    assert np.abs(jump).max() > 1e-6 * np.abs(rec.features).max()
