"""Analytic derivatives against central finite differences (h = 1e-5 Å, float64).

dfeat (through ``dense_dfeat``, self column included) against moving one atom;
dfeat_strain against a homogeneous strain r -> r (I + eps), cell -> cell (I + eps).
Error: max |analytic - FD| per feature relative to that feature's max |derivative|.
"""

from __future__ import annotations

import numpy as np
import pytest

from amptorch.descriptors import GMP, GaussianSF

from ._helpers import ALLOY, alloy, ethanol, fd_positions, fd_strain, max_rel_error, slab, small_bulk

TOL = 1e-6

# short hard cutoffs on purpose: the derivatives are exact whatever the cutoff
pytestmark = pytest.mark.filterwarnings("ignore:GMP. the hard cutoff:UserWarning")

STRUCTURES = {
    # name: (builder, atoms moved by finite differences)
    "molecule": (ethanol, [0, 2, 8]),
    "bulk": (small_bulk, [0, 1]),
    "slab": (slab, [0, 8]),
    "alloy": (alloy, [3, 11]),
}

GMP_CASES = {
    "o0-9_square_cosine": dict(orders=range(10), sigmas=[0.4, 1.1], cutoff=5.0, smooth_cutoff="cosine"),
    "o0-9_sqrt_polynomial": dict(
        orders=range(10),
        sigmas=[0.4, 1.1],
        cutoff=5.0,
        square=False,
        smooth_cutoff="polynomial",
        cutoff_gamma=3.0,
    ),
    "o0-3_sqrt_hard": dict(orders=[0, 1, 2, 3], sigmas=[0.3, 0.9], cutoff=6.0, square=False),
    # solid_harmonics=False runs the general Gaussian-moment kernel path (the others the harmonic one)
    "o0-5_nonsolid": dict(orders=range(6), sigmas=[0.4, 1.1], cutoff=5.0, solid_harmonics=False, rs=1.5),
    "default": dict(),
}

GSF_KW = dict(
    g2=[(0.05, 0.0), (0.4, 1.8)],
    g4=[(0.01, 1.0, 1.0), (0.03, 2.0, -1.0)],
    g5=[(0.01, 1.0, -1.0), (0.02, 4.0, 1.0)],
)


def _check(desc, name: str, strain: bool = True, h: float = 1e-5) -> None:
    build, movers = STRUCTURES[name]
    atoms = build()
    rec = desc.compute(atoms, derivatives=True, strain=strain)
    assert rec.n_pairs > 0
    dense = rec.dense_dfeat()
    numeric = fd_positions(desc, atoms, movers, h)
    err = max_rel_error(dense[:, :, movers], numeric)
    assert err < TOL, f"dfeat: max relative FD error {err:.2e}"
    if strain:
        err = max_rel_error(rec.dfeat_strain, fd_strain(desc, atoms, h))
        assert err < TOL, f"dfeat_strain: max relative FD error {err:.2e}"


# default GMP (15.29 Å cutoff) on the molecule and the small cell only, to stay fast
GMP_RUNS = [(c, n) for c in GMP_CASES for n in STRUCTURES if c != "default" or n in ("molecule", "bulk")]


@pytest.mark.parametrize("case, name", GMP_RUNS)
def test_gmp_finite_differences(case, name):
    # The default settings on the 2-atom cell sum ~2000 images: the sigma = 2.66 order-0 feature is
    # ~5000 Å x its largest derivative, so h = 1e-5 would measure the FD's own round-off (1e-6);
    # h = 1e-4 keeps truncation and round-off both below 2e-7 there.
    h = 1e-4 if (case, name) == ("default", "bulk") else 1e-5
    _check(GMP(**GMP_CASES[case]), name, h=h)


@pytest.mark.parametrize("name", ["bulk", "alloy"])
def test_gmp_harmonic_fast_path_equals_moment_path(name, monkeypatch):
    """The kernel's solid-harmonic shortcut E[S(u)] = lambda^n S(d) against its general moment expansion."""
    from amptorch import _core

    desc = GMP(orders=range(10), sigmas=[0.3, 0.8, 1.5], cutoff=5.0)
    atoms = STRUCTURES[name][0]()
    fast = desc.compute(atoms, strain=True)
    general = desc.kernel_tables.with_harmonic(False)
    assert desc.kernel_tables.harmonic and not general.harmonic
    kernel, calls = _core.gmp, []

    def moment_path(tables, *args, **kwargs):
        calls.append(tables)
        return kernel(general, *args, **kwargs)

    monkeypatch.setattr(_core, "gmp", moment_path)
    slow = desc.compute(atoms, strain=True)
    assert calls == [desc.kernel_tables]
    for a, b in ((fast.features, slow.features), (fast.dfeat, slow.dfeat), (fast.dfeat_strain, slow.dfeat_strain)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("cutoff_fn", ["cosine", "polynomial"])
def test_gsf_finite_differences(cutoff_fn, name):
    atoms = STRUCTURES[name][0]()
    elements = sorted(set(atoms.get_chemical_symbols()))
    desc = GaussianSF(elements, cutoff=4.2, cutoff_fn=cutoff_fn, gamma=4.0, **GSF_KW)
    _check(desc, name)


def test_gsf_per_element_parameters_finite_differences():
    desc = GaussianSF(
        ["C", "H", "O"],
        cutoff=4.5,
        **GSF_KW,
        per_element={
            "H": dict(g2=[(0.2, 0.5), (1.0, 1.0)], g4=[(0.02, 2.0, 1.0), (0.05, 1.0, -1.0)], g5=GSF_KW["g5"])
        },
    )
    _check(desc, "molecule")


def test_gmp_densities_override_and_fallback_element_finite_differences():
    # Pr has no psp_v3 density: fallback; Cu given explicitly by the user.
    atoms = alloy()
    atoms.numbers[:2] = 59
    desc = GMP(orders=[0, 1, 2], sigmas=[0.5, 1.0], cutoff=5.0, densities={"Cu": [(2.0, 1.5), (-0.5, 4.0)]})
    rec = desc.compute(atoms)
    numeric = fd_positions(desc, atoms, [0, 5])
    assert max_rel_error(rec.dense_dfeat()[:, :, [0, 5]], numeric) < TOL


def test_fd_detects_a_wrong_derivative():
    """The FD check itself can fail: a perturbed analytic derivative is caught."""
    desc = GMP(orders=[0, 1, 2], sigmas=[0.5, 1.0], cutoff=5.0)
    atoms = ethanol()
    dense = desc.compute(atoms).dense_dfeat()
    numeric = fd_positions(desc, atoms, [0])
    assert max_rel_error(dense[:, :, [0]], numeric) < TOL
    assert max_rel_error(dense[:, :, [0]] * (1 + 1e-4), numeric) > TOL


def test_alloy_has_ten_elements():
    assert sorted(set(alloy().get_chemical_symbols())) == sorted(ALLOY)


def test_strain_block_is_symmetric_for_rotation_invariant_features():
    rec = GMP(orders=[0, 1, 2, 3], sigmas=[0.4, 1.0], cutoff=6.0).compute(small_bulk(), strain=True)
    s = rec.dfeat_strain
    assert np.abs(s - np.swapaxes(s, -1, -2)).max() < 1e-9 * np.abs(s).max()


def test_self_images_enter_strain_not_positions():
    """A 1-atom periodic cell: every neighbour is a self-image; no pair blocks, nonzero strain derivative."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.cell[2, 0] += 0.3  # break the cubic symmetry so the strain response is anisotropic
    desc = GMP(orders=[0, 2], sigmas=[0.5, 1.0], cutoff=6.0)
    rec = desc.compute(atoms, strain=True)
    assert rec.n_pairs == 0 and rec.dfeat.shape == (0, 4, 3)
    assert np.abs(rec.dfeat_strain).max() > 0
    assert max_rel_error(rec.dfeat_strain, fd_strain(desc, atoms)) < TOL
