"""Conformal calibration on synthetic errors whose distribution is known."""

from __future__ import annotations

import numpy as np
import pytest

from amptorch.errors import InputError
from amptorch.potential.metrics import Labels
from amptorch.uq.conformal import Calibration, ConformalCalibrator, z_of


def synthetic(n: int, seed: int, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Raw σ (log-normal spread) and |errors| drawn from N(0, (scale σ)^2): the raw σ is `scale` too small."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.normal(size=n))
    return sigma, np.abs(rng.normal(size=n) * scale * sigma)


@pytest.mark.parametrize("coverage", [0.68, 0.9, 0.95])
def test_normalized_reaches_coverage_and_recovers_the_scale(coverage):
    sigma, err = synthetic(4000, seed=1)
    cal = ConformalCalibrator(coverage, "normalized").fit(sigma, err)
    # the true errors are 3 σ_raw Gaussians: the calibrated σ is 3 σ_raw, q is 3 z_c
    assert cal.scale == pytest.approx(3.0, rel=0.05)
    assert cal.quantile == pytest.approx(3.0 * z_of(coverage), rel=0.05)
    t_sigma, t_err = synthetic(50_000, seed=2)
    covered = (t_err <= cal.half_width(t_sigma)).mean()
    assert abs(covered - coverage) < 0.02
    np.testing.assert_allclose(cal.sigma(t_sigma), cal.scale * t_sigma, rtol=1e-14)


def test_split_reaches_coverage_with_one_width():
    sigma, err = synthetic(4000, seed=3)
    cal = ConformalCalibrator(0.9, "split").fit(sigma, err)
    t_sigma, t_err = synthetic(50_000, seed=4)
    width = cal.half_width(t_sigma)
    assert np.all(width == width[0])
    assert abs((t_err <= width).mean() - 0.9) < 0.02


def test_finite_sample_guarantee():
    """Averaged over many small calibration sets, coverage is at least c (split conformal's guarantee)."""
    rng = np.random.default_rng(5)
    hits = []
    for _ in range(400):
        sigma = np.exp(rng.normal(size=20))
        err = np.abs(rng.standard_t(3, size=20)) * sigma  # heavy tails: no Gaussian assumption needed
        cal = ConformalCalibrator(0.9).fit(sigma, err)
        s = np.exp(rng.normal(size=50))
        hits.append((np.abs(rng.standard_t(3, size=50)) * s <= cal.half_width(s)).mean())
    assert np.mean(hits) >= 0.9 - 0.01


def test_energy_per_atom_and_force_components_calibrated_separately():
    rng = np.random.default_rng(6)
    n_atoms = rng.integers(2, 9, size=600)
    e_std = 0.01 * n_atoms * np.exp(rng.normal(size=600))  # eV per structure
    e_ref = rng.normal(size=600)
    e_pred = e_ref + 2.0 * e_std * rng.normal(size=600)  # energy σ 2× too small
    f_std = [0.1 * np.exp(rng.normal(size=n)) for n in n_atoms]
    f_ref = [rng.normal(size=(n, 3)) for n in n_atoms]
    f_pred = [r + 5.0 * s[:, None] * rng.normal(size=(len(s), 3)) for r, s in zip(f_ref, f_std, strict=True)]
    labels = [Labels(np.full(n, 29), e, f) for n, e, f in zip(n_atoms, e_ref, f_ref, strict=True)]
    pred = {"energy": e_pred, "energy_std": e_std, "forces": f_pred, "forces_std": f_std, "n_atoms": n_atoms}
    cal = Calibration.fit(pred, labels, coverage=0.9)
    assert cal.energy.scale == pytest.approx(2.0, rel=0.1)
    assert cal.forces.scale == pytest.approx(5.0, rel=0.05)
    out = cal.apply(dict(pred))
    np.testing.assert_allclose(out["energy_uncertainty"], cal.energy.scale * e_std, rtol=1e-12)
    np.testing.assert_allclose(out["forces_uncertainty"][3], cal.forces.scale * f_std[3], rtol=1e-12)
    assert out["calibrated"] is True
    again = Calibration.from_json(cal.to_json())
    assert again.energy.quantile == cal.energy.quantile and again.forces.n == cal.forces.n


@pytest.mark.parametrize(
    "args, fit, message",
    [
        ((1.2,), None, "coverage: got 1.2; expected a fraction strictly between 0 and 1"),
        ((0.9, "local"), None, "mode: got 'local'; expected one of"),
        ((0.9,), (np.ones(5), np.ones(5)), "5 points cannot give 0.9 coverage; expected at least 9"),
        ((0.9,), (np.ones(20), np.ones(19)), "20 σ values but 19 errors"),
        ((0.9,), (np.r_[np.zeros(1), np.ones(19)], np.ones(20)), "1 of 20 raw σ are 0"),
        ((0.9,), (np.r_[np.nan, np.ones(19)], np.ones(20)), "NaN or inf"),
    ],
)
def test_bad_input_is_one_line(args, fit, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        cal = ConformalCalibrator(*args)
        cal.fit(*fit)
    assert "\n" not in str(err.value)


def test_smallest_calibration_set():
    """n = ⌈c / (1 − c)⌉ points suffice (9 for 0.9: the level ⌈10 · 0.9⌉ / 9 is exactly 1, the largest score)."""
    cal = ConformalCalibrator(0.9, "split").fit(np.ones(9), np.arange(9.0))
    assert cal.quantile == 8.0 and cal.n == 9


def test_not_fitted_and_damaged_json():
    with pytest.raises(InputError, match="not fitted"):
        ConformalCalibrator().half_width([1.0])
    with pytest.raises(InputError, match="calibration.energy: damaged"):
        Calibration.from_json({"energy": {"coverage": 0.9}, "forces": None})
    with pytest.raises(InputError, match="quantile -1.0"):
        ConformalCalibrator.from_json({"coverage": 0.9, "mode": "split", "quantile": -1, "n": 3})
