"""The original's ``amptorch.uncertainty`` on our package: its example 3_GMP_S2E_w_uncertainty and its
cp_uncertainty_calibration_test, shrunk (CuCO chains labelled by EMT, energies only), plus every estimator
the original shipped (two of them crashed there) checked against the core's own path."""

from __future__ import annotations

import numpy as np
import pytest

from amptorch.errors import InputError
from amptorch.trainer import AtomsTrainer
from amptorch.uncertainty import (
    ConformalPredictionFeatureSpace,
    ConformalPredictionLatentSpace,
    EnsembleSDEstimator,
    NegativeLeastLikelihoodFeatureSpace,
    NegativeLeastLikelihoodLatentSpace,
)
from amptorch.uncertainty.utils import (
    NegativeLeastLikelihoodEstimator,
    calc_dist,
    calc_uncertainty_metrics,
    split_test_calib,
)
from tests.compat.conftest import MCSHS, cuco

SEEDS = range(6)


def s2e_config(images, run_dir, seed: int = 1) -> dict:
    """The example's S2E config (SingleNN, energies only), shrunk."""
    return {
        "model": {"name": "singlenn", "get_forces": False, "num_layers": 2, "num_nodes": 10},
        "optim": {"device": "cpu", "force_coefficient": 0.0, "lr": 1e-2, "batch_size": 10, "epochs": 40},
        "dataset": {"raw_data": images, "val_split": 0, "fp_scheme": "gmpordernorm", "fp_params": MCSHS,
                    "save_fps": False},
        "cmd": {"debug": False, "run_dir": str(run_dir), "seed": seed, "identifier": "uq", "verbose": False,
                "logger": False},
    }  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return cuco(np.linspace(2, 5, 150)), cuco(np.linspace(2.2, 3, 240))


@pytest.fixture(scope="module")
def trainer(data, tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return AtomsTrainer(s2e_config(data[0], tmp_path_factory.mktemp("uq"))).train()
    finally:
        torch.set_num_threads(before)


def emt_energies(images) -> np.ndarray:
    return np.array([a.get_potential_energy() for a in images])


def test_cp_latent_example_workflow(trainer, data):
    """The example's steps 4-5: keys, shapes, the residuals of the test part, coverage near 1 - alpha."""
    train, test = data
    res = ConformalPredictionLatentSpace(per_calib=0.5).fit_predict(trainer, train, test)
    assert sorted(res) == ["alpha", "residuals", "uncertainty"] and res["alpha"] == 0.1
    assert res["residuals"].shape == res["uncertainty"].shape == (120,)
    assert np.isfinite(res["uncertainty"]).all() and (res["uncertainty"] > 0).all()
    # residuals: prediction - EMT of the test part, in the original's split order
    resid = np.array(trainer.predict(test)["energy"]) - emt_energies(test)
    test_res, _, _, _ = split_test_calib(list(resid), list(resid), 0.5, seed=1)
    np.testing.assert_allclose(res["residuals"], test_res, rtol=0, atol=1e-12)
    # conformal coverage is a promise over random calibration/test splits: its mean over seeds
    miss = [calc_uncertainty_metrics(*(lambda r: (r["residuals"], r["uncertainty"]))(
        ConformalPredictionLatentSpace(per_calib=0.5, seed=s).fit_predict(trainer, train, test)))[0]
        for s in SEEDS]  # fmt: skip
    assert abs(np.mean(miss) - 0.1) < 0.05, miss


def test_cp_latent_equals_core_path(trainer, data):
    """The adapter is the core's LatentDistance + ConformalCalibrator on energies per atom, nothing else."""
    from amptorch.data import featurize
    from amptorch.uncertainty.utils import split_indices
    from amptorch.uq import ConformalCalibrator, LatentDistance

    train, test = data
    est = ConformalPredictionLatentSpace(alpha=0.2, per_calib=0.4, num_nearest_neighbors=4, seed=3)
    res = est.fit_predict(trainer, train, test)
    pot = trainer.potential
    ld = LatentDistance(k=4, aggregate="mean").fit(pot, featurize(train, pot.descriptor, derivatives=False,
                                                                  progress=False))  # fmt: skip
    sigma = ld.predict(pot, test, forces=False)["energy_std"]
    err = np.abs(np.array(trainer.predict(test)["energy"]) - emt_energies(test)) / 3
    t, c = split_indices(len(test), 0.4, seed=3)
    cal = ConformalCalibrator(coverage=0.8).fit(sigma[c], err[c])
    np.testing.assert_allclose(res["uncertainty"], 3 * cal.half_width(sigma[t]), rtol=1e-10)
    assert est.qhat == pytest.approx(cal.quantile)


def test_feature_space_conformal_runs(trainer, data):
    """The original raised AttributeError (seed and k never stored); here it calibrates as the latent one."""
    train, test = data
    miss = []
    for s in SEEDS:
        res = ConformalPredictionFeatureSpace(alpha=0.1, per_calib=0.5, num_nearest_neighbors=5, seed=s).fit_predict(
            trainer, train, test)  # fmt: skip
        assert sorted(res) == ["alpha", "residuals", "uncertainty"]
        assert np.isfinite(res["uncertainty"]).all() and (res["uncertainty"] > 0).all()
        miss.append(calc_uncertainty_metrics(res["residuals"], res["uncertainty"])[0])
    assert abs(np.mean(miss) - 0.1) < 0.05, miss


@pytest.mark.parametrize("cls", [NegativeLeastLikelihoodLatentSpace, NegativeLeastLikelihoodFeatureSpace])
def test_nll_estimators_run(trainer, data, cls):
    """The original raised TypeError (objective called with one argument); here σ = s1 + s2 d is a maximum
    of the calibration likelihood: better than the starting point and than a constant σ."""
    from scipy import stats

    train, test = data
    est = cls(per_calib=0.5, seed=2)
    res = est.fit_predict(trainer, train, test)
    assert sorted(res) == ["residuals", "uncertainty"] and res["uncertainty"].shape == (120,)
    assert np.isfinite(res["uncertainty"]).all() and (res["uncertainty"] > 0).all()
    assert est.s1 >= 0 and est.s2 >= 0
    # σ tracks the errors' size: the mean σ is within a factor 3 of the RMS residual (eV per structure)
    rms = np.sqrt(np.mean(res["residuals"] ** 2))
    assert rms / 3 < res["uncertainty"].mean() < 3 * rms
    nll = np.sum(-stats.norm.logpdf(res["residuals"], scale=res["uncertainty"]))
    assert nll < np.sum(-stats.norm.logpdf(res["residuals"], scale=4 * rms))


def test_nll_estimator_recovers_parameters():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.1, 2.0, 4000)
    y = rng.normal(0, 0.02 + 0.3 * d)
    est = NegativeLeastLikelihoodEstimator()
    est.fit(y, d)
    assert est.s1 == pytest.approx(0.02, abs=0.01) and est.s2 == pytest.approx(0.3, rel=0.06)
    np.testing.assert_allclose(est.predict([0.0, 1.0]), [est.s1, est.s1 + est.s2])
    assert est.gaussian([est.s1, est.s2]) < est.gaussian([0.02 * 2, 0.3 / 2])


def test_ensemble_sd_estimator(data, trainer, tmp_path):
    """The original's list of independently trained trainers: member-mean residual and population σ."""
    train, test = data
    other = AtomsTrainer({**s2e_config(train, tmp_path, seed=7), "optim": {**s2e_config(train, tmp_path)["optim"],
                                                                          "epochs": 10}}).train()  # fmt: skip
    res = EnsembleSDEstimator().fit_predict([trainer, other], train, test)
    e = np.stack([trainer.predict(test)["energy"], other.predict(test)["energy"]])
    np.testing.assert_allclose(res["residuals"], e.mean(axis=0) - emt_energies(test), atol=1e-10)
    np.testing.assert_allclose(res["uncertainty"], np.abs(e[0] - e[1]) / 2, atol=1e-10)
    assert (res["uncertainty"] > 0).all()


def test_prepare_helpers(trainer, data):
    """The original's helpers: per-structure mean latent / fingerprint and residuals, from a trainer or its
    potential alike."""
    from amptorch.uncertainty.utils import prepare_featureNerror_from_trainer, prepare_latentNerror_from_trainer

    test = data[1][:12]
    lat, res = prepare_latentNerror_from_trainer(trainer, test)
    pred = trainer.predict(test, get_latent=-2)
    np.testing.assert_allclose(lat, [z.mean(axis=0) for z in pred["latent"]], rtol=1e-12)
    np.testing.assert_allclose(res, np.array(pred["energy"]) - emt_energies(test), atol=1e-12)
    feat, res2 = prepare_featureNerror_from_trainer(trainer.potential, test)
    assert feat.shape == (12, trainer.potential.descriptor.length)
    np.testing.assert_allclose(res2, res, atol=1e-12)
    with pytest.raises(InputError, match="get_latent: got -3"):
        prepare_latentNerror_from_trainer(trainer, test, get_latent=-3)


def test_utils_match_the_original_recipes():
    # split: the original seeded numpy's global stream and drew a permutation with choice
    x = list(range(50))
    test_x, test_y, calib_x, calib_y = split_test_calib(x, [10 * v for v in x], 0.2, seed=4)
    order = np.random.RandomState(4).choice(50, size=50, replace=False)
    assert calib_x == order[:10].tolist() and test_x == order[10:].tolist() and test_y == [10 * v for v in test_x]
    # calc_dist: standardized, mean of the k nearest; a 1-D line of points spaced 1 (std of 0..9 is 2.872)
    train = np.arange(10.0)[:, None]
    np.testing.assert_allclose(calc_dist(train, [[4.5]], nearest_neighbors=2), [0.5 / np.std(np.arange(10))],
                               rtol=1e-6)  # fmt: skip
    assert calc_uncertainty_metrics([0.1, -0.3, 0.2, 0.05], [0.2, 0.2, 0.2, 0.2]) == (0.25, 0.2)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ConformalPredictionLatentSpace(get_latent=-1), "get_latent: got -1"),
        (lambda: ConformalPredictionLatentSpace(alpha=1.5), "alpha: got 1.5"),
        (lambda: ConformalPredictionFeatureSpace(per_calib=0), "per_calib: got 0"),
        (lambda: NegativeLeastLikelihoodLatentSpace(num_nearest_neighbors=0), "num_nearest_neighbors: got 0"),
    ],
)
def test_bad_settings(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_bad_calls(trainer, data, tmp_path):
    train, test = data
    with pytest.raises(InputError, match="per_calib: 0.001 of 240 test structures leaves 0 for calibration"):
        ConformalPredictionLatentSpace(per_calib=0.001).fit_predict(trainer, train, test)
    with pytest.raises(InputError, match="no trained model"):
        ConformalPredictionLatentSpace().fit_predict(AtomsTrainer(s2e_config(train, tmp_path)), train, test)
    unlabelled = [a.copy() for a in test]  # copies carry no calculator
    with pytest.raises(InputError, match="full_test_list"):
        ConformalPredictionLatentSpace().fit_predict(trainer, train, unlabelled)
    with pytest.raises(InputError, match="expected a non-empty list of trained AtomsTrainers"):
        EnsembleSDEstimator().fit_predict([], train, test)
    from amptorch.uncertainty import ConformalPrediction

    with pytest.raises(InputError, match="not fitted"):
        ConformalPrediction(0.1).predict([1.0])
