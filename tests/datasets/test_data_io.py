"""read_structures and label checks: every bad label names the frame."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from amptorch import InputError
from amptorch.data import check_labels, labels, read_structures

from .conftest import cu_bulk, water


def test_read_variants(tmp_path, images):
    assert read_structures(images[0]) == [images[0]]
    assert len(read_structures(images)) == 6
    assert len(read_structures(tuple(images))) == 6
    ase.io.write(tmp_path / "a.extxyz", images[:2])
    ase.io.write(tmp_path / "b.extxyz", images[2:5])
    assert len(read_structures(tmp_path / "a.extxyz")) == 2
    assert len(read_structures(str(tmp_path / "*.extxyz"))) == 5
    mixed = read_structures([str(tmp_path / "b.extxyz"), images[5]])
    assert len(mixed) == 4
    # frames read back carry their labels
    lab = labels(read_structures(tmp_path / "a.extxyz")[1], 1)
    assert np.isclose(lab["energy"], images[1].get_potential_energy())
    np.testing.assert_allclose(lab["forces"], images[1].get_forces(), atol=1e-8)


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_structures(tmp_path / "missing.extxyz")
    with pytest.raises(InputError, match="matches no file"):
        read_structures(str(tmp_path / "*.nothing"))
    with pytest.raises(InputError, match=r"raw_data\[1\]: got int"):
        read_structures([water(0), 3])
    with pytest.raises(InputError, match="raw_data: got NoneType"):
        read_structures(None)
    bad = tmp_path / "bad.extxyz"
    bad.write_text("not a structure file\n")
    with pytest.raises(InputError, match="could not read"):
        read_structures(bad)


def test_labels_live_calculator():
    a = cu_bulk(0)
    a.calc = EMT()
    lab = labels(a, 0, forces=True, stress=True)
    assert lab["forces"].shape == (32, 3) and lab["stress"].shape == (6,)
    assert np.isfinite(lab["energy"])


def _sp(atoms, **res):
    atoms.calc = SinglePointCalculator(atoms, **res)
    return atoms


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("nocalc", "structure 4: energy: no calculator"),
        ("noenergy", "structure 4: energy: missing"),
        ("nanenergy", "structure 4: energy: got nan"),
        ("infenergy", "structure 4: energy: got inf"),
        ("noforces", "structure 4: forces: missing"),
        ("nanforces", "structure 4: forces: atom 1 has a non-finite"),
        ("nostress", "structure 4: stress: missing"),
    ],
)
def test_label_errors_name_frame(case, pattern):
    good = [_sp(water(k), energy=1.0, forces=np.zeros((3, 3)), stress=np.zeros(6)) for k in range(4)]
    bad = water(9)
    f = np.zeros((3, 3))
    if case == "nocalc":
        pass
    elif case == "noenergy":
        _sp(bad, forces=f)
    elif case == "nanenergy":
        _sp(bad, energy=float("nan"), forces=f)
    elif case == "infenergy":
        _sp(bad, energy=float("inf"), forces=f)
    elif case == "noforces":
        _sp(bad, energy=1.0)
    elif case == "nanforces":
        f[1, 2] = np.nan
        _sp(bad, energy=1.0, forces=f)
    elif case == "nostress":
        _sp(bad, energy=1.0, forces=f)
    with pytest.raises(InputError, match=pattern):
        check_labels(good + [bad], forces=True, stress=(case == "nostress"))


def test_forces_wrong_shape_and_optional():
    a = _sp(water(0), energy=1.0)
    a.calc.results["forces"] = np.zeros((2, 3))
    with pytest.raises(InputError, match=r"structure 7: forces: shape \(2, 3\); expected \(3, 3\)"):
        labels(a, 7)
    b = _sp(water(1), energy=2.5)
    assert labels(b, 0, forces=False) == {"energy": 2.5}


def test_molecule_stress_from_emt_is_missing():
    m = water(0)
    m.set_cell(np.zeros((3, 3)))  # a bare molecule: EMT has no stress for it
    m.calc = EMT()
    with pytest.raises(InputError, match="structure 2: stress"):
        labels(m, 2, stress=True)


def test_changed_atoms_named():
    a = _sp(water(0), energy=1.0, forces=np.zeros((3, 3)))
    a.positions[0, 0] += 0.1
    with pytest.raises(InputError, match="structure 5: energy: the structure's positions changed"):
        labels(a, 5)
