"""Uncertainty of a trained potential: ensembles, MC dropout, latent distance, conformal calibration.

A layer between ``potential`` and ``train``: it imports potential, models,
data and descriptors, never ``amptorch.train`` or skorch. Every method gives,
per structure, an energy σ (eV) and, per atom, a force σ (eV/Å) (raw, and
calibrated once ``amptorch calibrate`` has run):

    from amptorch import uq
    state = uq.load("runs/checkpoints/my-run")          # = TrainedPotential.load(...).uq
    out = state.predict(images, "ensemble")             # energy, forces, energy_uncertainty, forces_uncertainty

See docs/uncertainty.md.
"""

from amptorch.uq.base import UQ_METHODS, SamplingMethod, UncertaintyMethod, check_method
from amptorch.uq.conformal import Calibration, ConformalCalibrator
from amptorch.uq.dropout import MCDropout
from amptorch.uq.ensemble import Ensemble
from amptorch.uq.latent import LatentDistance
from amptorch.uq.metrics import calibration_plot, error_vs_sigma_plot, uq_report
from amptorch.uq.state import UQState, load

__all__ = ["UQ_METHODS", "Calibration", "ConformalCalibrator", "Ensemble", "LatentDistance", "MCDropout",
           "SamplingMethod", "UQState", "UncertaintyMethod", "calibration_plot", "check_method",
           "error_vs_sigma_plot", "load", "uq_report"]  # fmt: skip
