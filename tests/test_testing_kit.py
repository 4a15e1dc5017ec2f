"""The physics test kit (``amptorch.testing``) on potentials built without training.

Every descriptor x model x dtype of the kit passes its checks through the ASE
calculator (forces and stress against finite differences, symmetries), the
feature-level checks pass for every kit descriptor, and each check FAILS on a
deliberately wrong input, so none of them can pass vacuously.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from amptorch import testing as kit
from amptorch.calculator import AmpTorchCalculator

SYMBOLS = ["H", "C", "O", "Cu", "Pd"]


@pytest.fixture(scope="module")
def structures() -> dict:
    """A rattled CuPd cell (4 atoms), a CuPd(111) slab (12) and ethanol (9)."""
    return {
        "bulk": kit.fcc_bulk(substitute={1: "Pd"}, rattle=0.1, seed=1),
        "slab": kit.fcc111_slab(substitute={0: "Pd"}, rattle=0.1, seed=2),
        "molecule": kit.isolated_molecule(),
    }


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread (tests/conftest.py)."""


def calculator(desc: str, model: str, dtype: str, structures: dict) -> AmpTorchCalculator:
    """An untrained potential on SYMBOLS, its scaler fitted to ``structures``, in the calculator."""
    potential = kit.make_potential(desc, model, SYMBOLS, dtype, fit_to=list(structures.values()))
    return AmpTorchCalculator(potential, n_threads=1)


# ------------------------------------------------------------------ the checks pass
@pytest.mark.parametrize("desc, model, dtype", kit.combinations())
def test_calculator_passes_the_checks(desc, model, dtype, structures):
    calc = calculator(desc, model, dtype, structures)
    p = kit.DTYPES[dtype]
    for name, atoms in structures.items():
        forces = kit.fd_forces(calc, atoms, p.h)
        assert np.abs(forces).max() > 1e-3, f"{name}: forces too small for a meaningful check"
        assert kit.check_forces_fd(calc, atoms, p.fd_rtol, h=p.h) < p.fd_rtol
        if atoms.pbc.all():
            kit.check_stress_fd(calc, atoms, p.fd_rtol, h=p.h)
        checked = kit.check_invariance(calc, atoms, rtol=p.invariance_rtol)
        expected = kit.TRANSFORMS if atoms.pbc.any() else ("rotation", "translation", "permutation")
        assert tuple(checked) == expected


@pytest.mark.parametrize("desc", list(kit.DESCRIPTORS))
def test_descriptor_passes_the_checks(desc, structures):
    for atoms in structures.values():
        d = kit.DESCRIPTORS[desc](sorted(set(atoms.get_chemical_symbols())))
        kit.check_invariance(d, atoms, rtol=1e-10)
        rec = d.compute(atoms, derivatives=True, strain=True)
        movers = [0, len(atoms) - 1]
        assert kit.max_rel_error(rec.dense_dfeat()[:, :, movers], kit.fd_feature_positions(d, atoms, movers)) < 1e-6
        if atoms.pbc.all():
            assert kit.max_rel_error(rec.dfeat_strain, kit.fd_feature_strain(d, atoms)) < 1e-6


def test_fd_stress_has_ase_sign_and_matches_emt():
    atoms = kit.fcc_bulk("Cu", 3.45, (2, 2, 2), rattle=0.05)  # compressed (EMT a0 ~ 3.59 Å)
    stress = kit.fd_stress(EMT(), atoms)
    assert np.all(stress[:3] < 0)
    kit.check_stress_fd(EMT(), atoms, 1e-5)
    kit.check_forces_fd(EMT(), atoms, 1e-6, indices=[0, 7])
    kit.check_invariance(EMT(), atoms)


def test_nve_drift_of_emt_is_small():
    drift = kit.nve_drift(EMT(), kit.fcc_bulk(repeat=(2, 2, 2), rattle=0.0), steps=100, temperature_range=(50, 1000))
    assert 0 < drift < 1e-4  # eV/atom


# ------------------------------------------------------------------ and fail on wrong input
class Distorted(Calculator):
    """``inner``'s forces times ``force_factor``; plus a uniform field: energy - field . sum(r), forces + field."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, inner, force_factor: float = 1.0, field=(0.0, 0.0, 0.0)):
        super().__init__()
        self.inner, self.force_factor, self.field = inner, force_factor, np.asarray(field, dtype=np.float64)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.inner
        energy = a.get_potential_energy() - float(self.field @ a.positions.sum(axis=0))
        self.results = {"energy": energy, "forces": a.get_forces() * self.force_factor + self.field}


@pytest.fixture(scope="module")
def calc64(structures):
    return calculator("gmp_smooth", "bpnn", "float64", structures)


@pytest.mark.parametrize("quantity", ["forces", "stress"])
def test_wrong_derivatives_fail(quantity, calc64, structures):
    """Right values pass; the same values off by 1 % fail; so does an energy function that ignores the atoms."""
    check = {"forces": kit.check_forces_fd, "stress": kit.check_stress_fd}[quantity]
    atoms = structures["bulk"]
    value = getattr(kit.with_calc(atoms, calc64), f"get_{quantity}")()
    check(calc64, atoms, **{quantity: value})
    with pytest.raises(AssertionError, match=rf"{quantity} .* relative error .* not below rtol"):
        check(calc64, atoms, **{quantity: value * 1.01})
    with pytest.raises(AssertionError, match="all zero"):
        check(lambda structures: [1.0] * len(structures), atoms, **{quantity: value})
    with pytest.raises(TypeError, match=f"{quantity}: required"):
        check(lambda structures: [0.0] * len(structures), atoms)


def test_inconsistent_calculator_fails(calc64, structures):
    with pytest.raises(AssertionError, match="relative error"):
        kit.check_forces_fd(Distorted(calc64, force_factor=1.01), structures["slab"])
    with pytest.raises(ValueError, match="periodic along all three axes"):
        kit.check_stress_fd(calc64, structures["slab"])


def test_calculator_that_breaks_a_symmetry_fails(calc64, structures):
    """A uniform external field: forces still -dE/dr, but the energy depends on where the atoms are."""
    atoms = structures["bulk"]
    field = Distorted(calc64, field=(0.05, -0.02, 0.01))
    kit.check_forces_fd(field, atoms)
    kit.check_invariance(field, atoms, transforms=("permutation",))
    for transform in ("rotation", "translation", "supercell", "images"):
        with pytest.raises(AssertionError, match=f"energy under {transform}"):
            kit.check_invariance(field, atoms, transforms=(transform,))


@pytest.mark.parametrize(
    "transform, wrong",
    [
        ("rotation", lambda a, f: f + a.positions[:, :1]),  # depends on the orientation
        ("translation", lambda a, f: f + a.positions.sum(axis=1, keepdims=True)),  # on the origin
        ("permutation", lambda a, f: f * np.arange(1, len(a) + 1)[:, None]),  # on the atom order
        ("supercell", lambda a, f: f / len(a)),  # on the cell size
        ("images", lambda a, f: f + np.floor(a.get_scaled_positions(wrap=False)).sum(axis=1, keepdims=True)),
    ],
)
def test_non_invariant_features_fail(transform, wrong, structures):
    """Each feature function breaks one symmetry; its check fails, the untouched features pass."""
    atoms = structures["bulk"]
    desc = kit.DESCRIPTORS["gmp"](SYMBOLS)

    def features(a):
        return wrong(a, desc.compute(a, derivatives=False).features)

    kit.check_invariance(desc, atoms, transforms=(transform,))
    with pytest.raises(AssertionError, match=f"under {transform}"):
        kit.check_invariance(features, atoms, transforms=(transform,))


def test_wrong_feature_derivatives_fail(structures):
    atoms = structures["molecule"]
    desc = kit.DESCRIPTORS["gsf"](["C", "H", "O"])
    dense = desc.compute(atoms).dense_dfeat()[:, :, [0]]
    numeric = kit.fd_feature_positions(desc, atoms, [0])
    assert kit.max_rel_error(dense, numeric) < 1e-6
    assert kit.max_rel_error(dense * (1 + 1e-4), numeric) > 1e-6


def test_nve_drift_catches_inconsistent_forces():
    atoms = kit.fcc_bulk(repeat=(2, 2, 2), rattle=0.0)
    good = kit.nve_drift(EMT(), atoms, steps=100)
    bad = kit.nve_drift(Distorted(EMT(), force_factor=1.3), atoms, steps=100)
    assert bad > 20 * good
    with pytest.raises(AssertionError, match="final temperature"):
        kit.nve_drift(EMT(), atoms, steps=20, temperature_range=(2000, 3000))


# ------------------------------------------------------------------ the kit itself
def test_parametrization_helpers():
    combos = kit.combinations()
    assert len(combos) == len(set(combos)) == len(kit.DESCRIPTORS) * len(kit.MODELS) * len(kit.DTYPES)
    assert kit.combinations(["gsf"], ["bpnn"], ["float32"]) == [("gsf", "bpnn", "float32")]
    assert set(kit.STRUCTURES) == {"bulk", "slab", "molecule", "alloy"}
    pbc = {name: tuple(make().pbc) for name, make in kit.STRUCTURES.items()}
    assert pbc == {"bulk": (True,) * 3, "slab": (True, True, False), "molecule": (False,) * 3, "alloy": (True,) * 3}
    assert set(kit.fcc_alloy().get_chemical_symbols()) == set(kit.ALLOY_ELEMENTS)


def test_structures_are_deterministic_and_seeded():
    for make in kit.STRUCTURES.values():
        np.testing.assert_array_equal(make().positions, make().positions)
    assert not np.allclose(kit.fcc_bulk(seed=0).positions, kit.fcc_bulk(seed=1).positions)
    frames = kit.make_cu_emt(3, seed=4, big_every=0, vacancy_every=1, vacancy_site=5, rattle=0.05)
    assert [len(f) for f in frames] == [31, 31, 31]
    assert set(frames[0].calc.results) == {"energy", "forces", "stress"}
    molecule = kit.label_emt(kit.isolated_molecule("H2O"))
    assert set(molecule.calc.results) == {"energy", "forces"}  # no cell: no stress


def test_strained_applies_the_deformation():
    atoms = kit.fcc_bulk(rattle=0.05)
    eps = np.array([[0.01, 0.002, 0.0], [0.002, -0.01, 0.0], [0.0, 0.0, 0.0]])
    out = kit.strained(atoms, eps)
    np.testing.assert_allclose(out.cell.array, atoms.cell.array @ (np.eye(3) + eps))
    np.testing.assert_allclose(out.get_scaled_positions(wrap=False), atoms.get_scaled_positions(wrap=False))


def test_import_pulls_in_no_trainer():
    code = "import sys, amptorch.testing; print(sorted(m for m in ('skorch', 'amptorch.train') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
