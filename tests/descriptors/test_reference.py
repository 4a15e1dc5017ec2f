"""Agreement with the original AmpTorch (commit 02e5af3) through ``from_amptorch``.

Reference values: tests/data/reference (trimmed; see its README.md). Features for every atom,
derivatives (unthresholded) for the stored centre atoms, relative 1e-6 per feature column.
Plus: the other parameter forms of the original (``MCSHs_detailed_list``, the older
``fp_scheme="gmp"`` groups) and an independent check of the GMP formula by direct numerical
quadrature of the probe x density integral on a 3D grid.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy as sp
from ase import Atoms

from amptorch.descriptors import GMP, GaussianSF
from amptorch.testing import fd_feature_positions, max_rel_error

from ._helpers import GMP_PARAMS, GSF_PARAMS, load_reference, reference_atoms

RTOL = 1e-6
STRUCTS = ["h2o", "ethanol", "cu108", "pt_co_slab", "hea128"]


def assert_close_per_feature(ours: np.ndarray, ref: np.ndarray, what: str, rtol: float = RTOL) -> None:
    """|ours - ref| <= rtol * max |ref| of the same feature column (axis 1); all-zero columns exactly 0."""
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    scale = np.moveaxis(np.abs(ref), 1, 0).reshape(ref.shape[1], -1).max(axis=1)
    assert scale.max() > 0, f"{what}: the reference is all zero"
    scale = np.where(scale > 0, scale, 1e-300)
    diff = np.moveaxis(np.abs(ours - ref), 1, 0).reshape(ref.shape[1], -1).max(axis=1)
    worst = int(np.argmax(diff / scale))
    assert diff[worst] <= rtol * scale[worst], (
        f"{what}: feature {worst} off by {diff[worst] / scale[worst]:.2e}"
    )


def reference_descriptor(kind: str, d: dict):
    if kind == "gmp":
        return GMP.from_amptorch(GMP_PARAMS)
    return GaussianSF.from_amptorch(GSF_PARAMS, [str(e) for e in d["elements"]])


@pytest.mark.parametrize("kind", ["gmp", "gsf"])
@pytest.mark.parametrize("struct", STRUCTS)
def test_features_and_derivatives_match_original(struct, kind):
    d = load_reference(f"{struct}_{kind}")
    desc = reference_descriptor(kind, d)
    assert desc.cutoff == pytest.approx(float(d["cutoff"]), abs=1e-12)
    rec = desc.compute(reference_atoms(d))
    assert_close_per_feature(rec.features, d["features"], f"{struct} {kind} features")
    dense = rec.dense_dfeat()[d["centres"]]
    assert_close_per_feature(dense, d["dfdr"], f"{struct} {kind} derivatives")
    # the no-derivative path gives the same features
    plain = desc.compute(reference_atoms(d), derivatives=False)
    assert plain.dfeat is None
    np.testing.assert_allclose(plain.features, rec.features, rtol=1e-13, atol=0)


@pytest.mark.parametrize("struct", ["ethanol", "hea128"])
def test_gsf_feature_rows_match_original_setup(struct):
    """Row order: the original's python sort of (kind, Z1, Z2, eta, Rs|zeta, lambda)."""
    d = load_reference(f"{struct}_gsf")
    desc = reference_descriptor("gsf", d)
    setup = d["descriptor_setup"]  # [kind, Z1, Z2, Rc, eta, Rs|zeta, lambda]
    for z in np.unique(d["numbers"]):
        rows = np.array(desc.rows[int(z)], dtype=float)
        assert rows.shape == (len(setup), 6)
        np.testing.assert_array_equal(rows[:, :3], setup[:, :3])
        np.testing.assert_allclose(rows[:, 3:], setup[:, 4:], rtol=1e-12, atol=0)
    assert len(desc.feature_names) == setup.shape[0]


def test_gmp_feature_rows_match_original_setup():
    d = load_reference("ethanol_gmp")
    desc = reference_descriptor("gmp", d)
    setup = d["descriptor_setup"]  # [order, square, solid, sigma, weight, A, alpha, cutoff, inv_rs]
    np.testing.assert_array_equal([p[0] for p in desc.probes], setup[:, 0])
    np.testing.assert_allclose([p[1] for p in desc.probes], setup[:, 3], rtol=1e-15)
    np.testing.assert_allclose(
        [(1 / (p[1] * math.sqrt(2 * math.pi))) ** 3 for p in desc.probes], setup[:, 5], rtol=1e-12
    )
    assert desc.square and desc.solid_harmonics and desc.smooth_cutoff is None


@pytest.mark.parametrize("struct", ["ethanol", "cu4"])
def test_orders_0_to_9(struct):
    d = load_reference(f"{struct}_orders0to9_gmp")
    params = json.loads(str(d["fp_params_json"]))
    assert params["MCSHs"]["orders"] == list(range(10))
    desc = GMP.from_amptorch(params)
    atoms = reference_atoms(d)
    rec = desc.compute(atoms)
    # features: all orders, elementwise relative (values span ~30 decades across orders)
    np.testing.assert_allclose(rec.features, d["features"], rtol=RTOL, atol=0)
    # derivatives: orders 0-8 against the original (order-major, 3 sigmas per order)
    low = slice(0, 27)
    assert_close_per_feature(
        rec.dense_dfeat()[d["centres"]][:, low], d["dfdr"][:, low], f"{struct} d(orders 0-8)"
    )
    # order 9 (wrong in the original): finite differences, every atom moved
    nine = GMP(orders=[9], sigmas=params["MCSHs"]["sigmas"], cutoff=params["cutoff"])
    rec9 = nine.compute(atoms)
    np.testing.assert_allclose(rec9.features, d["features"][:, 27:], rtol=RTOL, atol=0)
    np.testing.assert_allclose(rec9.dfeat, rec.dfeat[:, 27:], rtol=1e-12, atol=0)
    movers = list(range(len(atoms)))
    err = max_rel_error(rec9.dense_dfeat(), fd_feature_positions(nine, atoms, movers))
    assert err < 1e-6, f"order 9 derivatives: FD relative error {err:.2e}"


def test_detailed_list_form_equals_orders_sigmas_form():
    d = load_reference("pt_co_slab_gmp")
    sig = GMP_PARAMS["MCSHs"]["sigmas"]
    detailed = GMP.from_amptorch({"MCSHs_detailed_list": [{"order": o, "sigmas": sig} for o in range(4)]})
    plain = GMP.from_amptorch(GMP_PARAMS)
    assert detailed.probes == plain.probes and detailed.hash == plain.hash
    atoms = reference_atoms(d)
    a, b = detailed.compute(atoms), plain.compute(atoms)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.dfeat, b.dfeat)
    assert_close_per_feature(a.features, d["features"], "detailed list")
    # one sigma per entry ("sigma") is the same again
    single = GMP.from_amptorch(
        {"MCSHs_detailed_list": [{"order": o, "sigma": s} for o in range(4) for s in sig]}
    )
    np.testing.assert_array_equal(single.compute(atoms, derivatives=False).features, a.features)


# -- independent check by quadrature on a grid ---------------------------------------------------------

H_DENSITY = [(0.8, 1.3), (0.45, 5.0)]  # (B, beta): rho(r) = sum B exp(-beta r^2) around each H
H3 = Atoms("H3", positions=[[0.0, 0.0, 0.0], [0.45, -0.32, 0.55], [-0.61, 0.2, 0.38]])
SIGMAS = [0.5, 0.85]
# the original's groups (1-based), as index tuples, orders 0-3
GROUPS = {
    0: [[()]],
    1: [[(0,), (1,), (2,)]],
    2: [[(0, 0), (1, 1), (2, 2)], [(0, 1), (0, 2), (1, 2)]],
    3: [
        [(0, 0, 0), (1, 1, 1), (2, 2, 2)],
        [(0, 0, 1), (0, 0, 2), (1, 1, 0), (1, 1, 2), (2, 2, 0), (2, 2, 1)],
        [(0, 1, 2)],
    ],
}


def maxwell_function(index: tuple[int, ...]):
    """S(x, y, z) = (-1)^n r^(2n+1) d_a1 ... d_an (1/r), by sympy, as a numpy function."""
    xyz = sp.symbols("x y z", real=True)
    r = sp.sqrt(sum(v**2 for v in xyz))
    expr = 1 / r
    for a in index:
        expr = sp.diff(expr, xyz[a])
    n = len(index)
    poly = sp.simplify((-1) ** n * r ** (2 * n + 1) * expr)
    assert sp.Poly(sp.expand(poly), *xyz).total_degree() == n  # a polynomial of degree n
    f = sp.lambdify(xyz, poly, "numpy")
    return lambda x, y, z: f(x, y, z) + 0.0 * (x + y + z)  # order 0: a constant, broadcast


@pytest.fixture(scope="module")
def moments():
    """M[(index tuple, sigma)] = integral of exp(-r^2/(2 sigma^2)) S(r) rho(r) d^3r around atom 0 of H3.

    Without the probe amplitude. Uniform grid, spacing 0.125 Å, box +-8 Å: the trapezoid
    rule is spectrally accurate for these Gaussians (error far below 1e-10).
    """
    h = 0.125
    g = np.arange(-8.0, 8.0 + h / 2, h)
    x, y, z = np.meshgrid(g, g, g, indexing="ij", sparse=True)
    rho = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape))
    for p in H3.positions - H3.positions[0]:
        r2 = (x - p[0]) ** 2 + (y - p[1]) ** 2 + (z - p[2]) ** 2
        for b, beta in H_DENSITY:
            rho += b * np.exp(-beta * r2)
    r2 = x**2 + y**2 + z**2
    out = {}
    for order in range(4):
        tuples = [t for group in GROUPS[order] for t in group]
        for index in {tuple(sorted(t)) for t in tuples} | set(tuples):
            s = maxwell_function(index)(x, y, z) * rho
            for sigma in SIGMAS:
                out[index, sigma] = float((s * np.exp(-r2 / (2 * sigma**2))).sum() * h**3)
    return out


def test_gmpordernorm_matches_quadrature(moments):
    """feature(order, sigma) = sum over all 3^n index tuples of (A M)^2, A = (1/(sigma sqrt(2 pi)))^3."""
    import itertools

    desc = GMP(orders=[0, 1, 2, 3], sigmas=SIGMAS, cutoff=8.0, densities={"H": H_DENSITY})
    ours = desc.compute(H3, derivatives=False).features[0]
    expected = []
    for order in range(4):
        for sigma in SIGMAS:
            amp = (1 / (sigma * math.sqrt(2 * math.pi))) ** 3
            total = sum(
                (amp * moments[tuple(sorted(t)), sigma]) ** 2
                for t in itertools.product(range(3), repeat=order)
            )
            expected.append(total)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=0)
    # square=False is the square root
    root = GMP(orders=[0, 1, 2, 3], sigmas=SIGMAS, cutoff=8.0, densities={"H": H_DENSITY}, square=False)
    np.testing.assert_allclose(root.compute(H3, derivatives=False).features[0], np.sqrt(expected), rtol=1e-9)


def test_old_gmp_groups_scheme_matches_quadrature(moments, tmp_path):
    """fp_scheme="gmp": feature(order, group, sigma) = sqrt(sum_{c in group} (A M_c)^2).

    A = 1/(sigma sqrt(2 pi)) (not cubed, unlike gmpordernorm); the original's default square=False.
    """
    gfile = tmp_path / "H_pseudodensity.g"
    gfile.write_text("# B beta\n" + "".join(f"{b} {beta}\n" for b, beta in H_DENSITY))
    params = {
        "MCSHs": {str(o): {"groups": list(range(1, len(GROUPS[o]) + 1)), "sigmas": SIGMAS} for o in range(4)},
        "atom_gaussians": {"H": str(gfile)},
        "cutoff": 8.0,
    }
    desc = GMP.from_amptorch(params, fp_scheme="gmp")
    assert desc.grouped and not desc.square
    expected, names = [], []
    for order in range(4):
        for gi, group in enumerate(GROUPS[order], start=1):
            for sigma in SIGMAS:
                amp = 1 / (sigma * math.sqrt(2 * math.pi))
                expected.append(math.sqrt(sum((amp * moments[t, sigma]) ** 2 for t in group)))
                names.append(f"gmp_o{order}_g{gi}_s{sigma:g}")
    assert desc.feature_names == names
    ours = desc.compute(H3, derivatives=False).features[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=0)
    # a subset of groups picks those columns; orders/sigmas given to fp_scheme="gmp" expand to all groups
    sub = GMP.from_amptorch(
        {
            "MCSHs": {"2": {"groups": [2], "sigmas": SIGMAS}},
            "atom_gaussians": {"H": str(gfile)},
            "cutoff": 8.0,
        },
        fp_scheme="gmp",
    )
    k = names.index(f"gmp_o2_g2_s{SIGMAS[0]:g}")
    np.testing.assert_allclose(
        sub.compute(H3, derivatives=False).features[0], expected[k : k + 2], rtol=1e-12
    )
    full = GMP.from_amptorch(
        {
            "MCSHs": {"orders": [0, 1, 2, 3], "sigmas": SIGMAS},
            "atom_gaussians": {"H": str(gfile)},
            "cutoff": 8.0,
        },
        fp_scheme="gmp",
    )
    np.testing.assert_allclose(full.compute(H3, derivatives=False).features[0], expected, rtol=1e-12)


def test_quadrature_uses_the_densities_given():
    """Sanity: the grid moments respond to the density (so the two tests above can fail)."""
    a = GMP(orders=[0], sigmas=[0.5], cutoff=8.0, densities={"H": H_DENSITY}).compute(H3, derivatives=False)
    b = GMP(orders=[0], sigmas=[0.5], cutoff=8.0, densities={"H": [(0.8, 1.3)]}).compute(
        H3, derivatives=False
    )
    assert abs(a.features[0, 0] - b.features[0, 0]) > 1e-3 * a.features[0, 0]
