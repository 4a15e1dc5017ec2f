"""Forces and stress from the feature layer equal finite differences of the model's energy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from amptorch.data.batch import collate
from amptorch.testing import fd_forces, fd_stress, rel_error

from ._helpers import H_POS, H_STRAIN, energy_fn, make_model, make_structure, model_energies, record

NETS = ["singlenn", "singlenn_eo", "bpnn"]


@pytest.mark.parametrize("desc", ["gmp", "gsf"])
@pytest.mark.parametrize("net", NETS)
def test_forces_equal_finite_differences(net, desc, structure):
    kind, atoms = structure
    rec = record(desc, atoms)
    model = make_model(net, rec.n_features, [rec])
    out = model(collate([rec]), forces=True)
    forces = out["forces"].detach().numpy()
    fd = fd_forces(energy_fn(model, desc), atoms, H_POS)
    assert np.abs(fd).max() > 1e-3, "forces too small for a meaningful check"
    assert rel_error(forces, fd) < 1e-6, (kind, forces, fd)
    # the energy returned with the forces is the energy of the structure
    assert out["energy"].item() == pytest.approx(model_energies(model, [rec])[0], rel=1e-12)


@pytest.mark.parametrize("desc", ["gmp", "gsf"])
@pytest.mark.parametrize("net", ["singlenn", "bpnn"])
def test_stress_equals_strain_derivative(net, desc):
    atoms = make_structure("bulk")
    rec = record(desc, atoms)
    model = make_model(net, rec.n_features, [rec])
    stress = model(collate([rec]), forces=True, stress=True)["stress"].detach().numpy()[0]
    fd = fd_stress(energy_fn(model, desc), atoms, H_STRAIN)
    assert np.abs(fd).max() > 1e-4
    assert rel_error(stress, fd) < 1e-6, (stress, fd)


def test_fd_stress_helper_has_ase_sign_convention():
    """The strain-derivative helper reproduces EMT's stress (ASE's sign: compressed -> negative)."""
    atoms = bulk("Cu", "fcc", a=3.45, cubic=True)  # compressed (EMT a0 ~ 3.59 Å)
    atoms.rattle(0.03, seed=7)
    atoms.calc = EMT()
    emt = atoms.get_stress()

    def energies(structures):
        out = []
        for s in structures:
            s.calc = EMT()
            out.append(s.get_potential_energy())
        return out

    fd = fd_stress(energies, atoms, H_STRAIN)
    assert np.all(emt[:3] < 0)
    assert rel_error(fd, emt) < 1e-5


def test_model_stress_sign_under_compression():
    """A model trained-like on EMT is not needed: the model stress is (1/V) dE/deps, same sign rule as EMT.

    Build an energy that grows under compression (sum of GMP order-0 densities, which grow as atoms
    approach): the model stress of a compressed cell must then be negative, like EMT's.
    """
    atoms = bulk("Cu", "fcc", a=3.3, cubic=True)
    rec = record("gmp", atoms)
    model = make_model("singlenn", rec.n_features, hidden_layers=[4])
    net = model.network
    with torch.no_grad():  # identity-like positive network: e_i = sum of features
        for p in net.parameters():
            p.zero_()
        net.body[0].weight[:, :] = 0.0
        net.body[0].weight[0, :] = 1e-3
        net.out.weight[0, 0] = 1.0
    e0 = model_energies(model, [rec])[0]
    e_small = model_energies(model, [record("gmp", bulk("Cu", "fcc", a=3.25, cubic=True))])[0]
    assert e_small > e0  # energy rises on compression
    stress = model(collate([rec]), stress=True)["stress"].detach().numpy()[0]
    assert np.all(stress[:3] < 0)
    np.testing.assert_allclose(stress[3:], 0.0, atol=1e-10)


@pytest.mark.parametrize("kind", ["slab", "molecule"])
def test_stress_nan_without_volume(kind):
    rec = record("gmp", make_structure(kind))
    model = make_model("bpnn", rec.n_features, [rec])
    stress = model(collate([rec]), stress=True)["stress"]
    assert stress.shape == (1, 6)
    assert torch.isnan(stress).all()
