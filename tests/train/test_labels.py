"""Bad labels fail before training with one line naming the frame and field."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from amptorch.errors import InputError
from amptorch.train import AtomsTrainer

from .conftest import gmp_config


def _relabel(images, index: int, energy=True, forces=True) -> list:
    """Copies of the first 6 structures; frame ``index`` gets the labels given."""
    out = []
    for k, atoms in enumerate(images[:6]):
        a = atoms.copy()
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        if k == index:
            e = None if energy is None else e
            f = f if forces is True else forces
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


def _train_error(images, tmp_path) -> str:
    with pytest.raises(InputError) as info:
        AtomsTrainer(gmp_config(images, tmp_path, epochs=1)).train()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_frame_without_energy(cu_images, tmp_path):
    msg = _train_error(_relabel(cu_images, 3, energy=None), tmp_path)
    assert msg.startswith("structure 3: energy: missing")


def test_frame_without_calculator(cu_images, tmp_path):
    images = _relabel(cu_images, 0)
    images[4].calc = None
    assert _train_error(images, tmp_path).startswith("structure 4: energy: no calculator")


def test_nan_forces(cu_images, tmp_path):
    forces = cu_images[2].get_forces().copy()
    forces[7, 1] = np.nan
    msg = _train_error(_relabel(cu_images, 2, forces=forces), tmp_path)
    assert msg.startswith("structure 2: forces: atom 7 has a non-finite force")


def test_forces_of_wrong_shape(cu_images, tmp_path):
    msg = _train_error(_relabel(cu_images, 5, forces=np.zeros((3, 3))), tmp_path)
    assert msg.startswith("structure 5: forces: shape (3, 3); expected (32, 3)")


def test_missing_forces_fine_for_energy_training(cu_images, tmp_path):
    """Forces are only required when trained on (force_coefficient > 0)."""
    images = _relabel(cu_images, 1, forces=None)
    with pytest.raises(InputError, match="structure 1: forces: missing"):
        AtomsTrainer(gmp_config(images, tmp_path, epochs=1)).train()
    cfg = gmp_config(images, tmp_path, epochs=1, optim={"force_coefficient": 0.0}, cmd={"debug": True})
    AtomsTrainer(cfg).train()


def test_no_write_before_labels_checked(cu_images, tmp_path):
    """A bad frame stops the run before a run directory is made."""
    _train_error(_relabel(cu_images, 3, energy=None), tmp_path)
    assert not (tmp_path / "checkpoints").exists()
