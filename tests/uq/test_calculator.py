"""The calculator's uncertainty results equal predict's, on the fused GMP path and the training path."""

from __future__ import annotations

import numpy as np
import pytest

from amptorch.data import featurize
from amptorch.errors import InputError
from amptorch.potential import AmpTorchCalculator
from amptorch.testing import make_cu_emt, make_potential
from amptorch.uq import Ensemble, LatentDistance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images():
    return make_cu_emt(4, seed=8, a=3.61, big_every=0, vacancy_every=0)


def potential(descriptor: str, images, model: str = "singlenn"):
    """A potential with a 3-member ensemble, stored latents (inner layer), dropout and a calibration."""
    members = [make_potential(descriptor, model, ("Cu",), fit_to=images, seed=s, dropout=True, dropout_rate=0.2)
               for s in range(3)]  # fmt: skip
    pot = members[0]
    records = featurize(images, pot.descriptor, progress=False)
    pot.uq.ensemble = Ensemble([m.model.network for m in members])
    pot.uq.latent = LatentDistance(k=2, layer=0, aggregate="sum").fit(pot, records[:2])
    pot.uq.calibrate(records * 3, "ensemble", coverage=0.75)
    return pot


@pytest.mark.parametrize("descriptor, fused", [("gmp", True), ("gmp", False), ("gsf", False)])
@pytest.mark.parametrize("method", ["ensemble", "dropout", "latent"])
def test_calculator_equals_predict(images, descriptor, fused, method):
    pot = potential(descriptor, images, "singlenn" if descriptor == "gmp" else "bpnn")
    atoms = images[3].copy()
    pot.uq.dropout.seed = 11  # the same masks in both calls (one structure: the same (T·n, H) draws)
    calc = AmpTorchCalculator(pot, uncertainty=method, fused=fused)
    assert (calc.inference is not None) == (fused and descriptor == "gmp")
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    pred = pot.uq.predict([images[3]], method)
    assert calc.results["calibrated"] is pred["calibrated"] is (method == "ensemble")
    rtol = 1e-9  # fused path: the spline-tabulated kernel agrees with the training path to ~1e-11
    assert energy == pytest.approx(pred["energy"][0], rel=rtol)
    np.testing.assert_allclose(forces, pred["forces"][0], rtol=rtol, atol=1e-9)
    assert calc.results["energy_uncertainty"] == pytest.approx(pred["energy_uncertainty"][0], rel=1e-6)
    np.testing.assert_allclose(calc.results["forces_uncertainty"], pred["forces_uncertainty"][0], rtol=1e-6,
                               atol=1e-10)  # fmt: skip
    assert calc.get_property("energy_uncertainty", atoms) == calc.results["energy_uncertainty"]
    if method == "ensemble":  # energy, forces and stress are the member means
        res = pot.uq.ensemble.evaluate(pot, featurize([images[3]], pot.descriptor, strain=True, progress=False),
                                       stress=True)  # fmt: skip
        np.testing.assert_allclose(stress, res["stress"][:, 0].mean(0), rtol=1e-8, atol=1e-10)
    else:  # the plain model's prediction
        plain = AmpTorchCalculator(pot, fused=fused)
        np.testing.assert_allclose(energy, plain.get_potential_energy(images[3].copy()), rtol=1e-12)


def test_calculator_refuses_what_the_checkpoint_cannot_give(images):
    pot = make_potential("gmp", "singlenn", ("Cu",), fit_to=images)
    for method, message in (("ensemble", "holds one network"), ("latent", "stores no training latents"),
                            ("dropout", "no dropout layers"), ("mc", "uncertainty: got 'mc'")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            AmpTorchCalculator(pot, uncertainty=method)
