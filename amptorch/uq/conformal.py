"""Conformal calibration: the scale that turns a raw σ into an interval with a target coverage.

Two split-conformal variants, fitted on a held-out calibration set of n
(raw σ_i, |error_i|) pairs, with the finite-sample quantile level
⌈(n + 1) c⌉ / n (Lei et al. 2018), so that a new exchangeable point falls in
its interval with probability ≥ c:

* ``"normalized"`` (the default; locally adaptive, Papadopoulos et al. 2002,
  Lei et al. 2018 §5.2): scores s_i = |error_i| / σ_i, q = their quantile;
  the interval is ± q σ. Its width follows the raw σ, so a structure the
  method flags gets a wider interval and the ranking by σ is kept; that is
  the point of an uncertainty method, hence the default.
* ``"split"`` (plain split conformal): scores s_i = |error_i|, q = their
  quantile; the interval is ± q for every point. Valid coverage, but blind
  to the raw σ; kept as the reference and for raw σ that carry no
  information.

The calibrated σ reported next to predictions is the Gaussian σ whose
central interval at the calibration coverage c is that interval:
σ_cal = half_width / z_c with z_c = Φ⁻¹((1 + c) / 2). In normalized mode
σ_cal = (q / z_c) · σ_raw, the raw σ times ``scale``.

Energies are calibrated per atom (σ_E / n against |ΔE| / n) and forces per
Cartesian component (σ_i of atom i against |ΔF_ic|), each by its own
calibrator (:class:`Calibration`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from amptorch.errors import InputError

MODES = ("normalized", "split")
DEFAULT_MODE = "normalized"


def z_of(coverage: float) -> float:
    """z with P(|N(0, 1)| ≤ z) = coverage."""
    return float(norm.ppf(0.5 + 0.5 * coverage))


def check_coverage(coverage, what: str = "coverage") -> float:
    if isinstance(coverage, bool) or not isinstance(coverage, (int, float)) or not 0 < coverage < 1:
        raise InputError(f"{what}: got {coverage!r}; expected a fraction strictly between 0 and 1, e.g. 0.9")
    return float(coverage)


class ConformalCalibrator:
    """Split-conformal calibration of one quantity (energy per atom, or force components).

    Args:
        coverage: target fraction of errors inside the interval (0 < c < 1).
        mode: ``"normalized"`` (interval ± q σ_raw, the default) or ``"split"`` (± q for all).

    After :meth:`fit`: ``quantile`` q (score units: a factor of σ in normalized mode, the error's
    units in split mode), ``n`` (calibration points) and ``scale`` = q / z_c.
    """

    def __init__(self, coverage: float = 0.9, mode: str = DEFAULT_MODE):
        self.coverage = check_coverage(coverage)
        mode = str(mode).strip().lower()
        if mode not in MODES:
            raise InputError(f"mode: got {mode!r}; expected one of {list(MODES)}")
        self.mode = mode
        self.quantile: float | None = None
        self.n = 0

    @property
    def fitted(self) -> bool:
        return self.quantile is not None

    @property
    def scale(self) -> float:
        """q / z_c: calibrated σ per unit raw σ (normalized mode), or the calibrated σ itself (split mode)."""
        self._need_fit()
        return self.quantile / z_of(self.coverage)

    def fit(self, raw_sigma: np.ndarray, abs_errors: np.ndarray) -> ConformalCalibrator:
        """Fit q on calibration pairs (raw σ ≥ 0, |error|), any shape (flattened); returns self."""
        sigma = np.asarray(raw_sigma, dtype=np.float64).ravel()
        err = np.abs(np.asarray(abs_errors, dtype=np.float64).ravel())
        if sigma.shape != err.shape:
            raise InputError(f"calibration: {sigma.size} σ values but {err.size} errors; expected one per error")
        if not (np.isfinite(sigma).all() and np.isfinite(err).all()):
            raise InputError("calibration: σ or errors hold NaN or inf; expected finite values")
        if (sigma < 0).any():
            raise InputError("calibration: negative σ; expected σ ≥ 0")
        n = err.size
        # the 1e-9 keeps round-off (10 × 0.9 = 9.000000000000002) from asking for one point more
        level = math.ceil((n + 1) * self.coverage - 1e-9) / n if n else 2.0
        if level > 1:
            need = math.ceil(self.coverage / (1 - self.coverage) - 1e-9)
            raise InputError(
                f"calibration: {n} points cannot give {self.coverage:.3g} coverage; expected at least {need}"
            )
        if self.mode == "normalized":
            if (sigma <= 0).any():
                bad = int((sigma <= 0).sum())
                raise InputError(
                    f"calibration: {bad} of {n} raw σ are 0 (e.g. identical ensemble members); normalized mode "
                    "divides by σ, expected σ > 0 (or use mode='split')"
                )
            scores = err / sigma
        else:
            scores = err
        self.quantile = float(np.quantile(scores, level, method="higher"))
        self.n = int(n)
        return self

    def _need_fit(self) -> None:
        if self.quantile is None:
            raise InputError("calibration: not fitted; call fit(raw_sigma, abs_errors) first")

    def half_width(self, raw_sigma) -> np.ndarray:
        """Half-width of the interval at the calibration coverage, same shape as ``raw_sigma``."""
        self._need_fit()
        sigma = np.asarray(raw_sigma, dtype=np.float64)
        return self.quantile * sigma if self.mode == "normalized" else np.full_like(sigma, self.quantile)

    def sigma(self, raw_sigma) -> np.ndarray:
        """Calibrated σ = half_width / z_c (same shape as ``raw_sigma``)."""
        return self.half_width(raw_sigma) / z_of(self.coverage)

    def to_json(self) -> dict:
        self._need_fit()
        return {"coverage": self.coverage, "mode": self.mode, "quantile": self.quantile, "n": self.n}

    @classmethod
    def from_json(cls, data: dict, where: str = "calibration") -> ConformalCalibrator:
        try:
            cal = cls(data["coverage"], data["mode"])
            q, n = float(data["quantile"]), int(data["n"])
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{where}: damaged ({type(err).__name__}: {err}); expected coverage, mode, "
                             "quantile and n") from None  # fmt: skip
        except InputError as err:
            raise err.within(where) from None
        if not (math.isfinite(q) and q >= 0):
            raise InputError(f"{where}: quantile {q!r}; expected a finite value ≥ 0")
        cal.quantile, cal.n = q, n
        return cal


class Calibration:
    """The calibration of one method: energies per atom and force components, each its own calibrator."""

    def __init__(self, energy: ConformalCalibrator, forces: ConformalCalibrator | None):
        self.energy = energy
        self.forces = forces

    @classmethod
    def fit(cls, pred: dict, labels, coverage: float = 0.9, mode: str = DEFAULT_MODE) -> Calibration:
        """Fit on a method's predictions (``energy``, ``energy_std``, optional ``forces``, ``forces_std``) and
        the reference labels (labelled FeatureRecords, ase.Atoms or ``Labels``)."""
        from amptorch.potential.metrics import reference_labels

        n, e_ref, f_ref = reference_labels(labels)
        if np.isnan(e_ref).any():
            raise InputError("calibration set: a structure has no reference energy; expected labelled structures")
        energy = ConformalCalibrator(coverage, mode).fit(
            np.asarray(pred["energy_std"]) / n, np.abs(np.asarray(pred["energy"]) - e_ref) / n
        )
        forces = None
        if "forces_std" in pred and f_ref is not None:
            sig = np.concatenate([np.repeat(np.asarray(s)[:, None], 3, axis=1) for s in pred["forces_std"]])
            err = np.abs(np.concatenate([np.asarray(p) - r for p, r in zip(pred["forces"], f_ref, strict=True)]))
            forces = ConformalCalibrator(coverage, mode).fit(sig, err)
        return cls(energy, forces)

    def apply(self, pred: dict) -> dict:
        """``pred`` with ``energy_uncertainty`` (B,) eV and ``forces_uncertainty`` [(n,) eV/Å] added."""
        n = np.asarray(pred["n_atoms"], dtype=np.float64)  # (B,)
        std = np.asarray(pred["energy_std"], dtype=np.float64)
        pred["energy_uncertainty"] = self.energy.sigma(std / n) * n
        if "forces_std" in pred:
            if self.forces is None:
                raise InputError("calibration: fitted without forces; recalibrate on a set with reference forces")
            pred["forces_uncertainty"] = [self.forces.sigma(s) for s in pred["forces_std"]]
        pred["calibrated"] = True
        return pred

    def to_json(self) -> dict:
        return {"energy": self.energy.to_json(), "forces": None if self.forces is None else self.forces.to_json()}

    @classmethod
    def from_json(cls, data, where: str = "calibration") -> Calibration:
        if not isinstance(data, dict) or "energy" not in data:
            raise InputError(f"{where}: got {data!r:.60}; expected an object with 'energy' and 'forces'")
        forces = data.get("forces")
        return cls(ConformalCalibrator.from_json(data["energy"], f"{where}.energy"),
                   None if forces is None else ConformalCalibrator.from_json(forces, f"{where}.forces"))  # fmt: skip


__all__ = ["DEFAULT_MODE", "MODES", "Calibration", "ConformalCalibrator", "z_of"]
