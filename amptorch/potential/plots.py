"""Parity plots of predictions against reference labels (PNG, matplotlib on first use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amptorch.potential.metrics import reference_labels


def parity_plot(pred: dict, records, path: str | Path, title: str = "") -> Path:
    """PNG with energy-per-atom and force-component parity panels; ``records``: labelled records or ase.Atoms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, e_ref, forces = reference_labels(records)
    e_ref = e_ref / n
    e_pred = np.asarray(pred["energy"]) / n
    has_f = "forces" in pred and forces is not None
    fig, axes = plt.subplots(1, 2 if has_f else 1, figsize=(9 if has_f else 4.5, 4.2), squeeze=False)
    panels = [(axes[0, 0], e_ref, e_pred, "energy (eV/atom)")]
    if has_f:
        f_ref = np.concatenate(forces).ravel()
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
