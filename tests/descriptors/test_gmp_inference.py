"""GMPInference (the calculator's two-pass GMP kernel) and VerletPairs (its reused half list).

The reference is the training kernel: ``GMP.compute`` gives the features and
the derivative blocks; for any dE/dfeatures g, the forces are
F_j = -sum_p g[i_p] . dfeat[p] (+ the centre's share) and the virial is
sum_i g[i] . dfeat_strain[i]. The two kernels share their terms but not their
loops (half list here, full centre-sorted list there), so agreement to
round-off checks the pair bookkeeping: both atoms of a pair, the sign of odd
orders seen from the neighbour, periodic self-images and semi-periodic cells.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from amptorch.descriptors import GMP
from amptorch.descriptors.gmp_inference import GMPInference
from amptorch.descriptors.neighbors import VerletPairs
from amptorch.errors import InputError

from ._helpers import GMP_PARAMS, alloy, ethanol, slab, small_bulk

# short hard cutoffs on purpose: the two kernels must agree whatever the cutoff
pytestmark = pytest.mark.filterwarnings("ignore:GMP. the hard cutoff:UserWarning")


def cu_bulk():
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    a.set_cell(a.cell.array @ np.array([[1.02, 0.03, 0.0], [0.0, 0.98, 0.02], [0.01, 0.0, 1.0]]), scale_atoms=True)
    a.rattle(0.1, seed=5)
    return a


STRUCTURES = {"cu_bulk": cu_bulk, "ethanol": ethanol, "small_bulk": small_bulk, "slab": slab, "alloy": alloy}
DESCRIPTORS = {
    "hard": lambda: GMP.from_amptorch({**GMP_PARAMS, "cutoff": 6.0}),
    "cosine": lambda: GMP(orders=(0, 1, 2, 3, 4), sigmas=(0.3, 1.0, 2.0), cutoff=5.5, smooth_cutoff="cosine"),
    "polynomial_sqrt": lambda: GMP(
        orders=(0, 1, 2), sigmas=(0.5, 1.5), cutoff=5.0, smooth_cutoff="polynomial", cutoff_gamma=3.0, square=False
    ),
    "grouped": lambda: GMP.from_amptorch(
        {"MCSHs": {"0": {"groups": [1], "sigmas": [0.5, 1.0]}, "2": {"groups": [1, 2], "sigmas": [0.8]},
                   "3": {"groups": [1, 2, 3], "sigmas": [1.2]}}, "cutoff": 5.0},
        fp_scheme="gmp",
    ),
}  # fmt: skip


def reference_forces(rec, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-dE/dr (n, 3) and dE/dstrain (3, 3) for dE/dfeatures = g, from the training kernel's blocks."""
    gp = np.einsum("pf,pfc->pc", g[rec.pair_i], rec.dfeat)
    grad = np.zeros((len(rec.numbers), 3))
    np.add.at(grad, rec.pair_j, gp)
    np.add.at(grad, rec.pair_i, -gp)
    virial = np.einsum("nf,nfab->ab", g, rec.dfeat_strain)
    return -grad, virial


# (features, forces and virial) tolerances relative to the largest reference value: exact radial
# sums agree to round-off; the splines (error < 1e-11 of each radial function) to a little more
# (square-root features amplify it where a feature is small)
TOLERANCES = {False: (1e-12, 1e-11), True: (1e-12, 1e-9)}


@pytest.mark.parametrize("tabulate", [False, True], ids=["exact", "tabulated"])
@pytest.mark.parametrize("dname", list(DESCRIPTORS))
@pytest.mark.parametrize("sname", list(STRUCTURES))
@pytest.mark.parametrize("n_threads", [1, 2])
def test_matches_training_kernel(sname, dname, n_threads, tabulate):
    desc, atoms = DESCRIPTORS[dname](), STRUCTURES[sname]()
    rec = desc.compute(atoms, derivatives=True, strain=True)
    inf = GMPInference(desc, skin=0.3, tabulate=tabulate)
    feats = inf.features(atoms, n_threads=n_threads)
    assert (inf.table_spacing > 0) == tabulate
    tol_g, tol_f = TOLERANCES[tabulate]
    assert np.abs(feats - rec.features).max() <= tol_g * np.abs(rec.features).max()
    g = np.random.default_rng(0).normal(size=feats.shape)
    forces, virial = inf.forces(g, n_threads=n_threads)
    ref_f, ref_w = reference_forces(rec, g)
    assert np.abs(forces - ref_f).max() <= tol_f * np.abs(ref_f).max()
    assert np.abs(virial - ref_w).max() <= tol_f * np.abs(ref_w).max()
    assert np.abs(forces.sum(axis=0)).max() <= 1e-11 * np.abs(ref_f).max()  # Newton's third law


def test_table_follows_the_species_and_the_probe_widths():
    """One kernel over structures with different elements rebuilds its splines for each element set."""
    desc = DESCRIPTORS["hard"]()
    inf = GMPInference(desc)
    for atoms in (cu_bulk(), alloy(), slab(), cu_bulk()):
        ref = GMPInference(desc, tabulate=False).features(atoms)
        assert np.abs(inf.features(atoms) - ref).max() <= 1e-12 * np.abs(ref).max()
    # narrower probes vary faster in r: a finer grid
    wide = GMPInference(GMP(orders=(0, 1), sigmas=(1.0, 2.0), cutoff=6.0))
    narrow = GMPInference(GMP(orders=(0, 1), sigmas=(0.1, 2.0), cutoff=6.0))
    wide.features(cu_bulk())
    narrow.features(cu_bulk())
    assert 0 < narrow.table_spacing < wide.table_spacing


def test_virial_is_zero_torque_for_an_isolated_molecule():
    """Rotation invariance: the antisymmetric part of sum g d^T vanishes for a molecule."""
    desc, atoms = DESCRIPTORS["hard"](), ethanol()
    inf = GMPInference(desc)
    g = np.random.default_rng(1).normal(size=inf.features(atoms).shape)
    _, virial = inf.forces(g)
    assert np.abs(virial - virial.T).max() <= 1e-11 * np.abs(virial).max()


def test_skin_reuse_equals_rebuild():
    """An MD-like walk: the reused list gives the same features and forces as a fresh one each step."""
    desc = DESCRIPTORS["hard"]()
    atoms = cu_bulk()
    reused, fresh = GMPInference(desc, skin=0.6), GMPInference(desc, skin=0.0)
    rng = np.random.default_rng(7)
    g = rng.normal(size=(len(atoms), desc.length))
    for _ in range(12):
        atoms.positions += rng.normal(0, 0.04, atoms.positions.shape)  # ~0.07 Å per step
        f1, f0 = reused.features(atoms, 1), fresh.features(atoms, 1)
        assert np.abs(f1 - f0).max() <= 1e-12 * np.abs(f0).max()
        (F1, W1), (F0, W0) = reused.forces(g, 1), fresh.forces(g, 1)
        assert np.abs(F1 - F0).max() <= 1e-11 * np.abs(F0).max()
        assert np.abs(W1 - W0).max() <= 1e-11 * np.abs(W0).max()
    assert fresh.pairs.builds == 12
    assert 2 <= reused.pairs.builds < 12  # rebuilt once some atom moved more than skin / 2


def test_verlet_pairs_rebuild_rules():
    atoms = cu_bulk()
    pairs = VerletPairs(cutoff=5.0, skin=1.0)
    pos, cell, pbc = atoms.positions.copy(), atoms.cell.array.copy(), atoms.pbc.copy()
    pairs.update(pos, cell, pbc)
    pos[3] += [0.49, 0.0, 0.0]
    pairs.update(pos, cell, pbc)
    assert pairs.builds == 1  # moved less than skin / 2
    pos[3] += [0.02, 0.0, 0.0]
    pairs.update(pos, cell, pbc)
    assert pairs.builds == 2  # now more than skin / 2 from the last build
    pairs.update(pos, cell * 1.0001, pbc)
    assert pairs.builds == 3  # the cell changed
    pairs.update(pos, cell * 1.0001, np.array([True, True, False]))
    assert pairs.builds == 4  # pbc changed
    pairs.update(pos[:-1], cell * 1.0001, np.array([True, True, False]))
    assert pairs.builds == 5  # an atom fewer
    # each unordered pair of images once: a half list has half the full list's entries
    i, j, shift = pairs.update(atoms.positions, cell, pbc)
    d = atoms.positions[j] - atoms.positions[i] + shift @ cell
    keep = np.einsum("ij,ij->i", d, d) < 25.0
    from amptorch.descriptors.neighbors import neighbor_entries

    full = neighbor_entries(atoms.positions, cell, pbc, 5.0)
    assert 2 * int(keep.sum()) == len(full.ej)


def test_atoms_too_close_same_error_as_compute():
    desc = DESCRIPTORS["hard"]()
    atoms = cu_bulk()
    atoms.positions[5] = atoms.positions[2] + [0.05, 0.0, 0.0]
    with pytest.raises(InputError) as ref:
        desc.compute(atoms)
    inf = GMPInference(desc)
    with pytest.raises(InputError) as got:
        inf.features(atoms)
    assert str(got.value) == str(ref.value)
    assert "atoms 2 and 5 are 0.05 Å apart" in str(got.value)


def test_bad_inputs():
    desc = DESCRIPTORS["hard"]()
    with pytest.raises(InputError, match="solid_harmonics=True"):
        GMPInference(GMP(orders=(0, 1), sigmas=(0.5,), solid_harmonics=False))
    with pytest.raises(InputError, match="skin: got -0.1"):
        GMPInference(desc, skin=-0.1)
    inf = GMPInference(desc)
    with pytest.raises(InputError, match="call features"):
        inf.forces(np.zeros((2, desc.length)))
    atoms = cu_bulk()
    inf.features(atoms)
    with pytest.raises(InputError, match=r"dEdG: shape \(32, 3\); expected \(32, 20\)"):
        inf.forces(np.zeros((32, 3)))
    atoms.positions[4, 1] = np.nan
    with pytest.raises(InputError, match="atom 4 has a non-finite coordinate"):
        inf.features(atoms)
    with pytest.raises(InputError, match="element Xx|atomic number 0"):
        bad = cu_bulk()
        bad.numbers[0] = 0
        inf.features(bad)
