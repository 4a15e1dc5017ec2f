"""AmpTorchCalculator: forces and stress against finite differences, cell kinds, construction,
element checks, caching and energy conservation in NVE."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.calculator import PropertyNotImplementedError
from ase.cluster import Icosahedron

from amptorch import AmpTorch as LazyAmpTorch
from amptorch.calculator import AmpTorch, AmpTorchCalculator, as_potential
from amptorch.errors import InputError
from amptorch.models import AtomisticModel, build_model
from amptorch.testing import check_forces_fd, check_stress_fd, fcc_bulk, nve_drift
from amptorch.train import AtomsTrainer, TrainedPotential

RTOL = 1e-6  # finite differences of a float64 model, relative to the largest component


# --------------------------------------------------------------- derivatives
# both paths: fused (GMP inference kernel, the default) and the training path (fused=False)
PATHS = pytest.mark.parametrize("fused", [True, False], ids=["fused", "training-path"])


@PATHS
def test_forces_match_finite_differences(cu_trainer, cu32, fused):
    calc = AmpTorchCalculator(cu_trainer, fused=fused)
    assert (calc.inference is not None) == fused
    cu32.calc = calc
    forces = cu32.get_forces()
    check_forces_fd(calc, cu32, RTOL, indices=[0, 5, 17, 31], forces=forces)
    assert np.abs(forces.sum(axis=0)).max() < 1e-10  # no net force in a periodic cell


@PATHS
def test_stress_matches_strain_derivative(cu_trainer, cu32, fused):
    calc = AmpTorchCalculator(cu_trainer, fused=fused)
    cu32.calc = calc
    stress = cu32.get_stress()
    assert stress.shape == (6,)
    check_stress_fd(calc, cu32, RTOL, h=1e-6, stress=stress)
    full = cu32.get_stress(voigt=False)
    assert np.allclose(full, full.T)


def test_energies_sum_to_energy_and_free_energy(cu_trainer, cu32):
    cu32.calc = cu_trainer.get_calc()
    e = cu32.get_potential_energy()
    energies = cu32.get_potential_energies()
    assert energies.shape == (len(cu32),)
    assert abs(energies.sum() - e) < 1e-10
    assert cu32.get_potential_energy(force_consistent=True) == e


# the fused path's radial splines are accurate to ~1e-11 relative (tests/descriptors/test_gmp_inference.py
# checks it against exact sums); here the two routes must agree well within that, not to round-off
AGREE = 1e-8


def test_agrees_with_trainer_predict(cu_trainer, cu32):
    cu32.calc = cu_trainer.get_calc()
    pred = cu_trainer.predict([cu32], stress=True)
    assert abs(cu32.get_potential_energy() - pred["energy"][0]) < AGREE
    assert np.abs(cu32.get_forces() - pred["forces"][0]).max() < AGREE
    assert np.abs(cu32.get_stress() - pred["stress"][0]).max() < AGREE * 1e-2


# ------------------------------------------------------------------ cells
@PATHS
def test_slab_energy_forces_and_no_stress(cu_trainer, fused):
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    slab.rattle(0.05, seed=1)
    assert slab.pbc.tolist() == [True, True, False]
    calc = AmpTorchCalculator(cu_trainer, fused=fused)
    slab.calc = calc
    forces = slab.get_forces()
    assert np.isfinite(slab.get_potential_energy())
    check_forces_fd(calc, slab, RTOL, indices=[0, 6, 11], forces=forces)
    with pytest.raises(PropertyNotImplementedError):
        slab.get_stress()
    # the slab's energy does not depend on the vacuum
    more = slab.copy()
    more.center(vacuum=9.0, axis=2)
    more.calc = calc
    assert abs(more.get_potential_energy() - slab.get_potential_energy()) < 1e-10


@PATHS
def test_isolated_cluster(cu_trainer, fused):
    cluster = Icosahedron("Cu", noshells=2)  # 13 atoms, no cell, pbc False
    cluster.rattle(0.05, seed=2)
    calc = AmpTorchCalculator(cu_trainer, fused=fused)
    cluster.calc = calc
    forces = cluster.get_forces()
    assert forces.shape == (13, 3)
    check_forces_fd(calc, cluster, RTOL, forces=forces)
    assert np.abs(forces.sum(axis=0)).max() < 1e-10
    with pytest.raises(PropertyNotImplementedError):
        cluster.get_stress()
    # rigid rotation and translation leave the energy unchanged
    moved = cluster.copy()
    moved.rotate(37, "x", center="COM")
    moved.translate([1.3, -0.4, 2.2])
    moved.calc = calc
    assert abs(moved.get_potential_energy() - cluster.get_potential_energy()) < 1e-9


def test_stress_off_then_on(cu_trainer, cu32):
    """Training path: energy-only calls skip the strain derivatives; stress later gives the same energy."""
    calc = AmpTorchCalculator(cu_trainer, fused=False)
    cu32.calc = calc
    e = cu32.get_potential_energy()
    assert "stress" not in calc.results
    s = cu32.get_stress()
    assert calc.results["energy"] == pytest.approx(e, abs=1e-12)
    assert np.isfinite(s).all()


def test_fused_path_gives_stress_with_every_periodic_call(cu_trainer, cu32):
    calc = AmpTorchCalculator(cu_trainer)
    cu32.calc = calc
    cu32.get_potential_energy()
    assert calc.results["stress"].shape == (6,)
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    slab.calc = calc
    slab.get_potential_energy()
    assert "stress" not in calc.results


def test_fused_and_training_paths_agree(cu_trainer, cu32):
    """Same model, two routes to the forces: equal to round-off (small cell: periodic self-images)."""
    small = bulk("Cu", "fcc", a=3.61)  # 1 atom, 2.55 Å cell vectors, cutoff 6 Å: many self-images
    for atoms in (cu32, small, fcc111("Cu", size=(2, 2, 3), vacuum=6.0)):
        periodic = atoms.pbc.all()
        out = []
        for fused in (True, False):
            a = atoms.copy()
            a.calc = AmpTorchCalculator(cu_trainer, fused=fused)
            props = (a.get_potential_energies(), a.get_forces())
            out.append(props + ((a.get_stress(),) if periodic else ()))
        for x, y in zip(*out, strict=True):
            assert np.abs(x - y).max() < AGREE * max(1.0, np.abs(y).max())


# ------------------------------------------------------------ construction
def test_from_checkpoint_path_trainer_and_original_name(cu_trainer, cu32):
    run = cu_trainer.run_dir
    assert (run / "model.pt").is_file()
    assert as_potential(cu_trainer) is cu_trainer.potential
    assert as_potential(cu_trainer.potential) is cu_trainer.potential
    ref = cu_trainer.get_calc()
    cu32.calc = ref
    e_ref, f_ref = cu32.get_potential_energy(), cu32.get_forces()
    calcs = [
        AmpTorchCalculator(run),
        AmpTorchCalculator(str(run / "model.pt")),
        AmpTorchCalculator(TrainedPotential.load(run)),
        AmpTorchCalculator(cu_trainer.potential),
        AmpTorch(cu_trainer),
        LazyAmpTorch(cu_trainer),
        AmpTorch(AtomsTrainer().load_pretrained(run)),
    ]
    for calc in calcs:
        a = cu32.copy()
        a.calc = calc
        assert a.get_potential_energy() == pytest.approx(e_ref, abs=1e-10)
        assert np.abs(a.get_forces() - f_ref).max() < 1e-10


def test_bad_construction():
    with pytest.raises(InputError, match="expected a checkpoint path"):
        AmpTorchCalculator(42)
    with pytest.raises(InputError, match="meta.json"):
        AmpTorchCalculator("/nonexistent/checkpoint")
    with pytest.raises(InputError, match="call train"):
        AmpTorchCalculator(AtomsTrainer())
    with pytest.raises(InputError, match="call train"):
        AtomsTrainer().get_calc()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_n_threads(cu_trainer, bad):
    with pytest.raises(InputError, match="n_threads"):
        AmpTorchCalculator(cu_trainer, n_threads=bad)


def test_n_threads_restores_torch_threads(cu_trainer, cu32):
    torch.set_num_threads(2)
    try:
        cu32.calc = AmpTorchCalculator(cu_trainer, n_threads=1)
        cu32.get_forces()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_float32_model(cu_trainer, cu32):
    """A float32 copy of the model predicts within float32 accuracy of the float64 one."""
    pot = cu_trainer.potential
    model32 = AtomisticModel(build_model(pot.network["name"], pot.descriptor.length, **pot.network["options"]))
    model32 = model32.to(torch.float32)
    model32.load_state_dict({k: v.float() for k, v in pot.model.state_dict().items()})
    calc32 = AmpTorchCalculator(TrainedPotential(pot.descriptor, model32, pot.network))
    a32, a64 = cu32.copy(), cu32.copy()
    a32.calc, a64.calc = calc32, cu_trainer.get_calc()
    assert a32.get_potential_energy() == pytest.approx(a64.get_potential_energy(), abs=1e-4)
    assert np.abs(a32.get_forces() - a64.get_forces()).max() < 1e-4
    assert a32.get_forces().dtype == np.float64  # ase gets float64 arrays


# --------------------------------------------------------------- elements
def _untrained(cu_trainer, name: str, **options) -> AmpTorchCalculator:
    pot = cu_trainer.potential
    opts = {"elements": [29], "hidden_layers": [8], **options}
    model = AtomisticModel(build_model(name, pot.descriptor.length, **opts)).double()
    return AmpTorchCalculator(TrainedPotential(pot.descriptor, model, {"name": name, "options": opts}))


def _cu_ag(cu32: Atoms) -> Atoms:
    a = cu32.copy()
    a.symbols[[3, 7]] = "Ag"
    return a


def test_unseen_element_refused_by_bpnn(cu_trainer, cu32):
    a = _cu_ag(cu32)
    a.calc = _untrained(cu_trainer, "bpnn")
    with pytest.raises(InputError, match="element Ag was not in the training data"):
        a.get_potential_energy()


def test_unseen_element_refused_by_element_outputs(cu_trainer, cu32):
    a = _cu_ag(cu32)
    a.calc = _untrained(cu_trainer, "singlenn", element_outputs=True)
    with pytest.raises(InputError, match="element Ag .* no output layer for it"):
        a.get_forces()


def test_unseen_element_refused_with_gaussian_sf(cu32):
    from amptorch.descriptors import GaussianSF

    gs = {"default": {"G2": {"etas": [0.05, 0.5], "rs_s": [0]}, "cutoff": 5.0}}
    desc = GaussianSF.from_amptorch(gs, ["Cu"], {"cutoff_func": "cosine"})
    opts = {"elements": [29], "hidden_layers": [8]}
    model = AtomisticModel(build_model("singlenn", desc.length, **opts)).double()
    calc = AmpTorchCalculator(TrainedPotential(desc, model, {"name": "singlenn", "options": opts}))
    cu32.calc = calc
    assert np.isfinite(cu32.get_potential_energy())
    a = _cu_ag(cu32)
    a.calc = calc
    with pytest.raises(InputError, match="fingerprints have no channels for it"):
        a.get_potential_energy()


def test_unseen_element_warns_for_plain_singlenn_gmp(cu_trainer, cu32):
    a = _cu_ag(cu32)
    calc = cu_trainer.get_calc()
    a.calc = calc
    with pytest.warns(UserWarning, match=r"\['Ag'\] were not in the training data"):
        e = a.get_potential_energy()
    assert np.isfinite(e) and np.isfinite(a.get_forces()).all()
    # once per element set
    a.positions[0] += 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a.get_potential_energy()


# ---------------------------------------------------------------- caching
def test_fused_results_reused_when_atoms_unchanged(cu_trainer, cu32, monkeypatch):
    calc = AmpTorchCalculator(cu_trainer)
    calls = []
    features = calc.inference.features

    def counted(*args, **kwargs):
        calls.append(1)
        return features(*args, **kwargs)

    monkeypatch.setattr(calc.inference, "features", counted)
    cu32.calc = calc
    f = cu32.get_forces()
    cu32.get_potential_energy()
    cu32.get_potential_energies()
    cu32.get_stress()
    assert len(calls) == 1  # every property from one call
    cu32.positions[0, 0] += 0.01
    assert not np.array_equal(cu32.get_forces(), f)
    assert len(calls) == 2
    cu32.set_cell(cu32.cell * 1.001, scale_atoms=True)
    cu32.get_stress()
    assert len(calls) == 3


def test_results_reused_when_atoms_unchanged(cu_trainer, cu32, monkeypatch):
    calc = AmpTorchCalculator(cu_trainer, fused=False)
    calls = []
    compute = calc.potential.descriptor.compute

    def counted(*args, **kwargs):
        calls.append(kwargs.get("strain"))
        return compute(*args, **kwargs)

    monkeypatch.setattr(calc.potential.descriptor, "compute", counted)
    cu32.calc = calc
    e = cu32.get_potential_energy()
    f = cu32.get_forces()
    cu32.get_potential_energies()
    assert len(calls) == 1  # energy, forces and energies from one call
    assert cu32.get_potential_energy() == e
    cu32.get_stress()  # stress needs the strain derivatives: one more call
    cu32.get_stress()
    cu32.get_forces()
    assert calls == [False, True]
    cu32.positions[0, 0] += 0.01
    assert not np.array_equal(cu32.get_forces(), f)
    cu32.get_potential_energy()
    assert len(calls) == 3
    cu32.set_cell(cu32.cell * 1.001, scale_atoms=True)
    cu32.get_potential_energy()
    assert len(calls) == 4


# ------------------------------------------------------------------- NVE
# 1000 x 1 fs velocity Verlet from ~600 K Maxwell-Boltzmann velocities (seed 0); drifts in meV/atom
NVE = {"steps": 1000, "dt_fs": 1.0, "temperature": 300.0, "seed": 0, "temperature_range": (100, 1000)}


@pytest.mark.parametrize(
    "model, bound",
    [
        ("cu_smooth", 0.1),  # exact forces of a smooth potential: only the integrator's error
        ("cu_trainer", 1.0),  # the original's hard GMP cutoff: neighbours crossing it make small jumps
    ],
)
def test_nve_conserves_energy(model, bound, request):
    """1 ps (1000 x 1 fs) of Cu32 at ~300 K conserves the total energy within ``bound`` meV/atom."""
    atoms = fcc_bulk("Cu", 3.61, (2, 2, 2), rattle=0.0)
    drift = 1000 * nve_drift(AmpTorchCalculator(request.getfixturevalue(model), n_threads=1), atoms, **NVE)
    assert drift < bound


@pytest.mark.slow
def test_nve_conserves_energy_hard_cutoff_108(cu_trainer):
    """1 ps of Cu108 with the original's hard GMP cutoff: neighbours crossing it make small jumps."""
    atoms = fcc_bulk("Cu", 3.61, (3, 3, 3), rattle=0.0)
    assert 1000 * nve_drift(AmpTorchCalculator(cu_trainer, n_threads=1), atoms, **NVE) < 1.0
