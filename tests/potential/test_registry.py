"""The descriptor registry: a new descriptor, defined and registered in this one module, trains through
AtomsTrainer, predicts, round-trips through a checkpoint and drives the calculator; no other file knows it."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from amptorch.calculator import AmpTorchCalculator
from amptorch.descriptors import GMP, Descriptor, DescriptorEntry, register, registry
from amptorch.errors import InputError
from amptorch.potential import TrainedPotential
from amptorch.testing import make_cu_emt
from amptorch.train import AtomsTrainer


class RadialGMP(Descriptor):
    """A toy descriptor: the radial (order 0) GMP features only, with its own settings and scheme."""

    def __init__(self, sigmas=(0.5, 1.0, 1.5), cutoff: float = 5.0):
        self.sigmas = [float(s) for s in sigmas]
        self._gmp = GMP(orders=[0], sigmas=self.sigmas, cutoff=cutoff, smooth_cutoff="cosine")

    @property
    def cutoff(self) -> float:
        return self._gmp.cutoff

    @property
    def feature_names(self) -> list[str]:
        return [f"radial_s{s:g}" for s in self.sigmas]

    def settings(self) -> dict:
        return {"kind": "RadialGMP", "sigmas": self.sigmas, "cutoff": self.cutoff}

    def check_elements(self, numbers, index=None) -> None:
        self._gmp.check_elements(numbers, index)

    def _kernel(self, numbers, nl, derivatives, strain, float32, n_threads, index):
        return self._gmp._kernel(numbers, nl, derivatives, strain, float32, n_threads, index)


def _from_params(fp_params, scheme, elements, cutoff_params):
    unknown = sorted(set(fp_params or {}) - {"sigmas", "cutoff"})
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r}; expected sigmas, cutoff")
    return RadialGMP(**(fp_params or {}))


ENTRY = register(DescriptorEntry("RadialGMP", RadialGMP, ("radial_gmp",), _from_params))


def _config(images, run_dir, **dataset) -> dict:
    return {
        "model": {"name": "singlenn", "num_layers": 2, "num_nodes": 8},
        "optim": {"epochs": 15, "lr": 1e-2, "batch_size": 8, "force_coefficient": 0.1},
        "dataset": {"raw_data": images, "fp_scheme": "radial_gmp", "fp_params": {"sigmas": [0.6, 1.2], "cutoff": 4.5},
                    "save_fps": False, **dataset},
        "cmd": {"run_dir": str(run_dir), "verbose": False, "seed": 1},
    }  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread):
    images = make_cu_emt(12, seed=3, big_every=0)
    return AtomsTrainer(_config(images, tmp_path_factory.mktemp("radial"))).train(), images


def test_trains_predicts_and_round_trips(trained):
    trainer, images = trained
    assert isinstance(trainer.potential.descriptor, RadialGMP)
    assert trainer.potential.descriptor.length == 2
    pred = trainer.predict(images[:3])
    assert len(pred["energy"]) == 3 and pred["forces"][0].shape == (len(images[0]), 3)
    # energies learnt: better than predicting the mean energy per atom
    e = np.array([a.get_potential_energy() / len(a) for a in images])
    p = np.array(trainer.predict(images)["energy"]) / [len(a) for a in images]
    assert np.abs(p - e).mean() < np.abs(e - e.mean()).mean()
    # the checkpoint names the kind; loading rebuilds it through the registry
    pot = TrainedPotential.load(trainer.run_dir)
    assert isinstance(pot.descriptor, RadialGMP)
    assert pot.descriptor.settings() == trainer.potential.descriptor.settings()
    again = pot.predict(images[:3])
    np.testing.assert_allclose(again["energy"], pred["energy"], rtol=1e-12)


def test_calculator_forces_match_finite_differences(trained):
    trainer, _ = trained
    calc = AmpTorchCalculator(trainer.run_dir)
    assert calc.inference is None  # no fused path registered: the training path
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=2)
    atoms.calc = calc
    forces = atoms.get_forces()
    h = 1e-5
    for i, k in ((0, 0), (5, 2)):
        a = atoms.copy()
        a.calc = calc
        a.positions[i, k] += h
        ep = a.get_potential_energy()
        a.positions[i, k] -= 2 * h
        em = a.get_potential_energy()
        assert abs(-(ep - em) / (2 * h) - forces[i, k]) < 1e-6 * max(1.0, np.abs(forces).max())


def test_registry_answers_for_the_new_scheme():
    assert "radial_gmp" in registry.schemes()
    assert registry.by_scheme("RADIAL_GMP") is ENTRY
    assert registry.entry_of(RadialGMP()) is ENTRY
    assert isinstance(registry.from_settings(RadialGMP(sigmas=[0.7]).settings()), RadialGMP)


def test_bad_fp_params_name_their_key_path(tmp_path):
    with pytest.raises(InputError, match=r"^config dataset\.fp_params: unknown key 'sigma'; expected sigmas"):
        AtomsTrainer(_config([], tmp_path, fp_params={"sigma": [1.0]}))


def test_registry_errors():
    with pytest.raises(InputError, match=r"fp_scheme: got 'radial_gnp' \(did you mean 'radial_gmp'\?\)"):
        registry.by_scheme("radial_gnp")
    with pytest.raises(InputError, match="kind 'RadialGMP' is already RadialGMP"):
        register(DescriptorEntry("RadialGMP", GMP, ("other",), _from_params))
    with pytest.raises(InputError, match="fp_scheme 'gmp' already selects GMP"):
        register(DescriptorEntry("Other", RadialGMP, ("gmp",), _from_params))
    with pytest.raises(InputError, match="kind: got 'Nope'.*module must be imported first"):
        registry.from_settings({"kind": "Nope"})
    with pytest.raises(InputError, match=r"^config dataset\.fp_scheme: .*did you mean 'radial_gmp'"):
        AtomsTrainer({"dataset": {"fp_scheme": "radial_gm"}})
