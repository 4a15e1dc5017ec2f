"""How good the σ are: coverage, interval width, miscalibration area, Spearman, NLL; calibration plots.

Energies are scored per atom (eV/atom), forces per Cartesian component
(eV/Å, the atom's σ for each of its three components). The σ scored are the
calibrated ones (``energy_uncertainty``) when the prediction has them, the
raw ones (``energy_std``) otherwise; intervals are Gaussian, ± z_p σ.
Miscalibration area and NLL come from uncertainty-toolbox, Spearman from scipy.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from amptorch.errors import InputError
from amptorch.potential.metrics import reference_labels
from amptorch.uq.conformal import z_of

LEVELS = (0.68, 0.90, 0.95)
TINY = 1e-12  # σ floor: a zero σ (identical members) would make the Gaussian NLL infinite


def _uct():
    try:
        return importlib.import_module("uncertainty_toolbox")
    except ImportError:
        raise InputError("uq-report: uncertainty-toolbox is not installed; install amptorch[uq] "
                         "(or pip install uncertainty-toolbox)") from None  # fmt: skip


def flat_quantities(pred: dict, labels) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{"energy": (pred, σ, truth) per atom, "forces": (pred, σ, truth) per component} as flat arrays."""
    n, e_ref, f_ref = reference_labels(labels)
    if len(n) != len(pred["energy"]):
        raise InputError(f"labels: {len(n)} structures but {len(pred['energy'])} predictions; expected one each")
    if np.isnan(e_ref).any():
        raise InputError("labels: a structure has no reference energy; expected labelled structures")
    calibrated = "energy_uncertainty" in pred
    e_sig = np.asarray(pred["energy_uncertainty" if calibrated else "energy_std"], dtype=np.float64)
    out = {"energy": (np.asarray(pred["energy"], dtype=np.float64) / n, e_sig / n, e_ref / n)}
    f_key = "forces_uncertainty" if calibrated else "forces_std"
    if f_ref is not None and f_key in pred:
        f_pred = np.concatenate([np.asarray(f) for f in pred["forces"]]).ravel()
        f_sig = np.concatenate([np.repeat(np.asarray(s)[:, None], 3, axis=1) for s in pred[f_key]]).ravel()
        out["forces"] = (f_pred, f_sig, np.concatenate(f_ref).ravel())
    return out


def score(y_pred: np.ndarray, y_std: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """Coverage and mean half-width at 68/90/95 %, miscalibration area, Spearman(σ, |error|), Gaussian NLL."""
    uct = _uct()
    err = np.abs(y_true - y_pred)
    std = np.maximum(y_std, TINY)
    out: dict[str, float] = {"n": int(err.size)}
    for p in LEVELS:
        z = z_of(p)
        out[f"coverage_{round(p * 100)}"] = float((err <= z * std).mean())
        out[f"half_width_{round(p * 100)}"] = float(z * std.mean())
    out["miscalibration_area"] = float(uct.metrics_calibration.miscalibration_area(y_pred, std, y_true,
                                                                                   vectorized=True))  # fmt: skip
    with warnings.catch_warnings():  # a constant σ has no rank correlation: NaN, said so in the table
        warnings.simplefilter("ignore")
        rho = spearmanr(std, err).statistic if err.size > 1 else np.nan
    out["spearman"] = float(rho)
    out["nll"] = float(uct.metrics_scoring_rule.nll_gaussian(y_pred, std, y_true, scaled=True))
    return out


def uq_report(pred: dict, labels) -> dict:
    """Scores of one method's prediction against reference labels.

    Args:
        pred: a UQ prediction (``energy``, ``energy_std`` or ``energy_uncertainty``, and forces alike).
        labels: labelled FeatureRecords, ase.Atoms with stored energies/forces, or ``Labels``.

    Returns:
        ``{"sigma": "calibrated" | "raw", "energy": {...}, "forces": {...}}`` with, per quantity,
        ``coverage_68/90/95``, ``half_width_68/90/95`` (eV/atom, eV/Å), ``miscalibration_area``,
        ``spearman``, ``nll`` and ``n``.
    """
    out: dict = {"sigma": "calibrated" if "energy_uncertainty" in pred and pred.get("calibrated", True) else "raw"}
    for name, (y_pred, y_std, y_true) in flat_quantities(pred, labels).items():
        out[name] = score(y_pred, y_std, y_true)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def calibration_plot(pred: dict, labels, path: str | Path, title: str = "") -> Path:
    """PNG: observed against expected fraction of errors inside the central Gaussian interval (energy, forces)."""
    uct, plt = _uct(), _pyplot()
    data = flat_quantities(pred, labels)
    fig, axes = plt.subplots(1, len(data), figsize=(4.5 * len(data), 4.2), squeeze=False)
    for ax, (name, (y_pred, y_std, y_true)) in zip(axes[0], data.items(), strict=True):
        exp, obs = uct.metrics_calibration.get_proportion_lists_vectorized(
            y_pred, np.maximum(y_std, TINY), y_true, prop_type="interval"
        )
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.plot(exp, obs, lw=1.5)
        ax.fill_between(exp, exp, obs, alpha=0.2)
        ax.set_xlabel("expected coverage")
        ax.set_ylabel("observed coverage")
        ax.set_title(f"{title} {name}".strip())
    return _save(fig, path)


def error_vs_sigma_plot(pred: dict, labels, path: str | Path, title: str = "") -> Path:
    """PNG: |error| against σ (log-log) with the ± z σ lines of 68 / 95 % (energy per atom, force components)."""
    plt = _pyplot()
    data = flat_quantities(pred, labels)
    fig, axes = plt.subplots(1, len(data), figsize=(4.5 * len(data), 4.2), squeeze=False)
    for ax, (name, (y_pred, y_std, y_true)) in zip(axes[0], data.items(), strict=True):
        std, err = np.maximum(y_std, TINY), np.maximum(np.abs(y_true - y_pred), TINY)
        ax.scatter(std, err, s=4, alpha=0.4)
        line = np.geomspace(std.min(), std.max(), 50)
        for p in (0.68, 0.95):
            ax.plot(line, z_of(p) * line, "--", lw=0.8, label=f"{round(p * 100)} % interval")
        ax.set_xscale("log")
        ax.set_yscale("log")
        unit = "eV/atom" if name == "energy" else "eV/Å"
        ax.set_xlabel(f"σ ({unit})")
        ax.set_ylabel(f"|error| ({unit})")
        ax.set_title(f"{title} {name}".strip())
        ax.legend(fontsize=8)
    return _save(fig, path)


def format_report(report: dict, method: str = "") -> str:
    """The report as a plain-text table, one row per quantity (half-width in eV/atom or eV/Å)."""
    cols = {"coverage_68": "cov68", "coverage_90": "cov90", "coverage_95": "cov95", "half_width_90": "width90",
            "miscalibration_area": "miscal", "spearman": "spearman", "nll": "nll"}  # fmt: skip
    rows = [f"{'method':<10}{'quantity':<9}{'σ':<11}" + "".join(f"{h:>10}" for h in cols.values())]
    for name in ("energy", "forces"):
        if name in report:
            r = report[name]
            rows.append(f"{method:<10}{name:<9}{report['sigma']:<11}" + "".join(f"{r[c]:>10.4g}" for c in cols))
    return "\n".join(rows)


__all__ = ["LEVELS", "calibration_plot", "error_vs_sigma_plot", "flat_quantities", "format_report", "score",
           "uq_report"]  # fmt: skip
