"""Parity plots and error summaries of predictions against reference labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def errors(pred: dict, images_or_records) -> dict[str, float]:
    """Energy MAE/RMSE per atom (eV/atom) and force MAE/RMSE (eV/Å) against labels.

    ``images_or_records``: FeatureRecords (with energy/forces) in the order of ``pred``.
    """
    n = np.array([len(r.numbers) for r in images_or_records], dtype=float)
    e_ref = np.array([r.energy for r in images_or_records], dtype=float)
    de = (np.asarray(pred["energy"]) - e_ref) / n
    out = {"energy_mae": float(np.abs(de).mean()), "energy_rmse": float(np.sqrt((de**2).mean())),
           "n_structures": len(n)}  # fmt: skip
    if "forces" in pred and all(r.forces is not None for r in images_or_records):
        df = np.concatenate([p - r.forces for p, r in zip(pred["forces"], images_or_records, strict=True)])
        out.update(forces_mae=float(np.abs(df).mean()), forces_rmse=float(np.sqrt((df**2).mean())))
    return out


def parity_plot(pred: dict, records, path: str | Path, title: str = "") -> Path:
    """PNG with energy-per-atom and force-component parity panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([len(r.numbers) for r in records], dtype=float)
    e_ref = np.array([r.energy for r in records]) / n
    e_pred = np.asarray(pred["energy"]) / n
    has_f = "forces" in pred and all(r.forces is not None for r in records)
    fig, axes = plt.subplots(1, 2 if has_f else 1, figsize=(9 if has_f else 4.5, 4.2), squeeze=False)
    panels = [(axes[0, 0], e_ref, e_pred, "energy (eV/atom)")]
    if has_f:
        f_ref = np.concatenate([r.forces for r in records]).ravel()
        f_pred = np.concatenate(pred["forces"]).ravel()
        panels.append((axes[0, 1], f_ref, f_pred, "force component (eV/Å)"))
    for ax, ref, prd, label in panels:
        lo, hi = float(min(ref.min(), prd.min())), float(max(ref.max(), prd.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.scatter(ref, prd, s=4, alpha=0.5)
        mae = float(np.abs(prd - ref).mean())
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_title(f"{title} MAE {mae:.4g}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
