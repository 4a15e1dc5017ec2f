"""Maxwell-Cartesian polynomials, FeatureRecord storage, and Descriptor plumbing."""

from __future__ import annotations

import io
import itertools
import json
from math import factorial

import numpy as np
import pytest
import sympy as sp

from amptorch.descriptors import GMP, FeatureRecord, GaussianSF, from_settings, mcsh

from ._helpers import GMP_PARAMS, GSF_PARAMS, ethanol, slab, small_bulk

X, Y, Z = sp.symbols("x y z", real=True)


def as_sympy(nx: int, ny: int, nz: int):
    return sum(c * X**k * Y**l * Z**m for c, k, l, m in mcsh.monomials(nx, ny, nz))


def all_components(max_order: int = mcsh.MAX_ORDER):
    return [c for n in range(max_order + 1) for c in mcsh.components(n)]


def test_order_2_and_3_forms():
    r2 = X**2 + Y**2 + Z**2
    expected = {
        (0, 0, 0): 1,
        (1, 0, 0): X,
        (2, 0, 0): 2 * X**2 - Y**2 - Z**2,
        (0, 2, 0): 2 * Y**2 - X**2 - Z**2,
        (1, 1, 0): 3 * X * Y,
        (0, 1, 1): 3 * Y * Z,
        (3, 0, 0): 6 * X**3 - 9 * X * (Y**2 + Z**2),
        (2, 1, 0): 12 * X**2 * Y - 3 * Y**3 - 3 * Y * Z**2,
        (1, 0, 2): 12 * Z**2 * X - 3 * X**3 - 3 * X * Y**2,
        (1, 1, 1): 15 * X * Y * Z,
        # order 4, xxxx: 105 x^4 - 90 x^2 r^2 + 9 r^4
        (4, 0, 0): 105 * X**4 - 90 * X**2 * r2 + 9 * r2**2,
    }
    for comp, poly in expected.items():
        assert sp.expand(as_sympy(*comp) - poly) == 0, comp


def laplacian(monos) -> dict[tuple[int, int, int], float]:
    out: dict[tuple[int, int, int], float] = {}
    for c, *e in monos:
        for axis in range(3):
            if e[axis] >= 2:
                key = list(e)
                key[axis] -= 2
                out[tuple(key)] = out.get(tuple(key), 0.0) + c * e[axis] * (e[axis] - 1)
    return out


@pytest.mark.parametrize("order", range(mcsh.MAX_ORDER + 1))
def test_solid_polynomials_are_harmonic(order):
    for comp in mcsh.components(order):
        monos = mcsh.monomials(*comp)
        assert monos and all(k + l + m == order for _, k, l, m in monos), comp  # homogeneous, degree n
        scale = max(abs(c) for c, *_ in monos)
        lap = laplacian(monos)
        assert all(abs(v) <= 1e-12 * scale for v in lap.values()), comp
    # the check can fail: x^2 alone is not harmonic
    assert laplacian([(1.0, 2, 0, 0)]) == {(0, 0, 0): 2.0}


def _maxwell_numeric(comp, point):
    """(-1)^n r^(2n+1) d^n (1/r) at a point, by sympy differentiation (independent of mcsh)."""
    r = sp.sqrt(X**2 + Y**2 + Z**2)
    expr = 1 / r
    for axis, count in zip((X, Y, Z), comp, strict=True):
        if count:
            expr = sp.diff(expr, axis, count)
    n = sum(comp)
    val = ((-1) ** n * r ** (2 * n + 1) * expr).subs({X: point[0], Y: point[1], Z: point[2]})
    return float(val)


def test_equals_derivatives_of_inverse_r():
    point = np.random.default_rng(0).normal(size=3)
    comps = all_components(4) + [(5, 0, 0), (3, 1, 1), (9, 0, 0), (3, 3, 3), (0, 2, 7), (4, 4, 1)]
    for comp in comps:
        ours = sum(c * point[0] ** k * point[1] ** l * point[2] ** m for c, k, l, m in mcsh.monomials(*comp))
        ref = _maxwell_numeric(comp, point)
        assert ours == pytest.approx(ref, rel=1e-10, abs=1e-10 * np.linalg.norm(point) ** sum(comp)), comp


def test_non_solid_variant_drops_r2_and_scales():
    # solid=False: R = 1 and monomial x^k y^l z^m scaled by inv_rs^(k+l+m); 2x^2 - y^2 - z^2 -> 3 x^2 - 1
    assert sorted(mcsh.monomials(2, 0, 0, solid=False)) == sorted([(3.0, 2, 0, 0), (-1.0, 0, 0, 0)])
    scaled = dict(((k, l, m), c) for c, k, l, m in mcsh.monomials(2, 0, 0, solid=False, inv_rs=0.5))
    assert scaled == {(2, 0, 0): 0.75, (0, 0, 0): -1.0}


@pytest.mark.parametrize("order", range(mcsh.MAX_ORDER + 1))
def test_multiplicities_and_groups(order):
    comps = mcsh.components(order)
    assert len(comps) == len(set(comps)) == (order + 1) * (order + 2) // 2
    assert sum(mcsh.multiplicity(*c) for c in comps) == 3**order
    # multiplicity = number of index tuples with those counts
    counts = {}
    for t in itertools.product(range(3), repeat=order):
        key = (t.count(0), t.count(1), t.count(2))
        counts[key] = counts.get(key, 0) + 1
    assert counts == {c: mcsh.multiplicity(*c) for c in comps}
    # groups partition the components; group g = permutations of a partition nx >= ny >= nz
    groups = mcsh.groups(order)
    assert all(a >= b >= c and a + b + c == order for a, b, c in groups)
    flat = [c for g in groups for c in mcsh.group_components(g)]
    assert sorted(flat) == sorted(comps)
    assert all(len(mcsh.group_components(g)) == factorial(3) // _perm_symmetry(g) for g in groups)


def _perm_symmetry(g):
    return {3: 6, 2: 2, 1: 1}[max(g.count(v) for v in set(g))]


def test_known_group_counts():
    assert mcsh.groups(2) == [(2, 0, 0), (1, 1, 0)]
    assert mcsh.groups(3) == [(3, 0, 0), (2, 1, 0), (1, 1, 1)]
    assert [mcsh.multiplicity(*g) for g in mcsh.groups(4)] == [1, 4, 6, 12]


# -- FeatureRecord and Descriptor plumbing ------------------------------------------------------------


@pytest.fixture(scope="module")
def gmp():
    return GMP(orders=[0, 1, 2, 3], sigmas=[0.4, 1.0], cutoff=6.0)


@pytest.fixture(scope="module")
def gsf():
    return GaussianSF(["C", "H", "O", "Pt"], g2=[(0.1, 0.0), (0.5, 1.5)], g4=[(0.01, 1.0, 1.0)], cutoff=5.0)


def test_record_round_trip(gmp):
    atoms = slab()
    from ase.calculators.singlepoint import SinglePointCalculator

    forces = np.random.default_rng(0).normal(size=(len(atoms), 3))
    atoms.calc = SinglePointCalculator(atoms, energy=-3.25, forces=forces, stress=np.arange(6.0))
    rec = gmp.compute(atoms, strain=True)
    assert (
        rec.energy == -3.25
        and np.array_equal(rec.forces, forces)
        and np.array_equal(rec.stress, np.arange(6.0))
    )
    arrays = rec.to_arrays()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as d:
        back = FeatureRecord.from_arrays({k: d[k] for k in d.files})
    assert isinstance(back.energy, float)
    for key, value in arrays.items():
        np.testing.assert_array_equal(getattr(back, key), value)
    np.testing.assert_array_equal(back.dense_dfeat(), rec.dense_dfeat())
    assert back.volume is None and rec.n_pairs == back.n_pairs > 0
    # absent fields stay absent
    plain = gmp.compute(atoms, derivatives=False)
    assert "dfeat" not in plain.to_arrays() and "pair_i" not in plain.to_arrays()
    with pytest.raises(ValueError):
        plain.dense_dfeat()


def test_record_shapes_and_volume(gmp):
    atoms = small_bulk()
    rec = gmp.compute(atoms, strain=True)
    n, F, p = len(atoms), gmp.length, rec.n_pairs
    assert (
        rec.features.shape == (n, F)
        and rec.dfeat.shape == (p, F, 3)
        and rec.dfeat_strain.shape == (n, F, 3, 3)
    )
    assert rec.pair_i.dtype == np.int64 and (rec.pair_i != rec.pair_j).all()
    assert np.all(np.diff(rec.pair_i * n + rec.pair_j) > 0)  # sorted, one block per (i, j)
    assert rec.volume == pytest.approx(atoms.get_volume())
    assert gmp.compute(atoms).dfeat_strain is None


@pytest.mark.parametrize("workers", [1, 2])
def test_compute_many_equals_compute(gmp, gsf, workers):
    images = [ethanol(), slab(), ethanol()]
    images[2].positions += 0.1
    for desc in (gmp, gsf):
        if desc is gsf:
            images = [a for a in images if set(a.get_chemical_symbols()) <= {"C", "H", "O", "Pt"}]
        many = desc.compute_many(images, strain=True, workers=workers, progress=False)
        assert len(many) == len(images)
        for atoms, rec in zip(images, many, strict=True):
            one = desc.compute(atoms, strain=True)
            np.testing.assert_array_equal(rec.features, one.features)
            np.testing.assert_array_equal(rec.dfeat, one.dfeat)
            np.testing.assert_array_equal(rec.dfeat_strain, one.dfeat_strain)
            np.testing.assert_array_equal(rec.pair_j, one.pair_j)


def test_threads_give_the_same_result(gmp):
    atoms = small_bulk().repeat((2, 2, 2))
    one = gmp.compute(atoms, strain=True, n_threads=1)
    two = gmp.compute(atoms, strain=True, n_threads=2)
    np.testing.assert_array_equal(one.features, two.features)
    np.testing.assert_array_equal(one.dfeat, two.dfeat)
    np.testing.assert_array_equal(one.dfeat_strain, two.dfeat_strain)


@pytest.mark.parametrize("which", ["gmp", "gsf"])
def test_float32_close_to_float64(which, gmp, gsf):
    desc = gmp if which == "gmp" else gsf
    atoms = slab()
    atoms.symbols[-1] = "O"
    a = desc.compute(atoms, strain=True, dtype=np.float64)
    b = desc.compute(atoms, strain=True, dtype=np.float32)
    for key in ("features", "dfeat", "dfeat_strain"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == np.float64 and y.dtype == np.float32, key
        assert np.abs(x - y).max() <= 1e-6 * np.abs(x).max(), key
        assert not np.array_equal(x, y.astype(np.float64)) or np.abs(x).max() == 0  # really rounded


def test_settings_hash_and_round_trip(gmp, gsf):
    els, g2 = ["C", "H", "O", "Pt"], [(0.1, 0.0), (0.5, 1.5)]
    for desc, same, other in (
        (
            gmp,
            GMP(orders=[0, 1, 2, 3], sigmas=[0.4, 1.0], cutoff=6.0),
            GMP(orders=[0, 1, 2, 3], sigmas=[0.4, 1.0]),
        ),
        (
            gsf,
            GaussianSF(els, g2=g2, g4=[(0.01, 1.0, 1.0)], cutoff=5.0),
            GaussianSF(els, g2=g2, g4=[(0.01, 1.0, -1.0)], cutoff=5.0),
        ),
    ):
        assert len(desc.hash) == 64 and desc.hash == same.hash and desc.hash != other.hash
        settings = json.loads(json.dumps(desc.settings()))  # JSON-able
        back = from_settings(settings)
        assert type(back) is type(desc) and back.hash == desc.hash
        assert back.feature_names == desc.feature_names
        atoms = ethanol()
        np.testing.assert_array_equal(back.compute(atoms).features, desc.compute(atoms).features)
    # every GMP option changes the hash
    base = GMP(orders=[0, 1], sigmas=[0.5])
    variants = [
        GMP(orders=[0, 1], sigmas=[0.5], square=False),
        GMP(orders=[0, 1], sigmas=[0.5], smooth_cutoff="cosine"),
        GMP(orders=[0, 1], sigmas=[0.5], cutoff=6.0),
        GMP(orders=[0, 1], sigmas=[0.5], densities={"H": [(1.0, 2.0)]}),
        GMP(orders=[0, 1], sigmas=[0.5], fallback=False),
        GMP(orders=[0, 1], sigmas=[0.5], solid_harmonics=False),
        GMP(orders=[1, 0], sigmas=[0.5]),
    ]
    hashes = {base.hash} | {v.hash for v in variants}
    assert len(hashes) == len(variants) + 1


def test_hash_is_stable_across_processes():
    """The hash is a function of the settings only (no id, no dict order): a fixed value."""
    import subprocess
    import sys

    code = (
        "from amptorch.descriptors import GMP; print(GMP(orders=[0, 2], sigmas=[0.5, 1.0], cutoff=5.0).hash)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == GMP(orders=[0, 2], sigmas=[0.5, 1.0], cutoff=5.0).hash


def test_from_amptorch_settings_round_trip():
    gmp = GMP.from_amptorch(GMP_PARAMS)
    assert from_settings(gmp.settings()).hash == gmp.hash == GMP().hash
    gsf = GaussianSF.from_amptorch(GSF_PARAMS, ["Cu"])
    assert from_settings(gsf.settings()).hash == gsf.hash


def test_feature_names(gmp, gsf):
    for desc in (
        gmp,
        gsf,
        GMP.from_amptorch(GMP_PARAMS),
        GaussianSF.from_amptorch(GSF_PARAMS, ["C", "H", "O"]),
    ):
        names = desc.feature_names
        assert len(names) == desc.length == len(set(names))
    assert GMP.from_amptorch(GMP_PARAMS).feature_names[:2] == ["gmp_o0_s0.2", "gmp_o0_s0.69"]
    assert gmp.compute(ethanol()).features.shape[1] == gmp.length == 8
    assert gsf.length == 2 * 4 + 10  # G2 per element, G4 per element pair
    assert GaussianSF.from_amptorch(GSF_PARAMS, ["C", "H", "O"]).length == 36
    assert "gmp_o" in repr(gmp) or "GMP(" in repr(gmp)


def test_kernel_threads_do_not_leak_into_the_process(gmp, gsf):
    """n_threads applies to the kernel call only (omp_set_num_threads would also throttle torch)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        for desc in (gmp, gsf):
            desc.compute(slab(), n_threads=1)
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
