"""Errors of predictions against reference labels (energy per atom, forces)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from amptorch.descriptors.base import stored_labels


class Labels(NamedTuple):
    """Reference labels of one structure, without its fingerprints."""

    numbers: np.ndarray  # (n,)
    energy: float | None  # eV
    forces: np.ndarray | None  # (n, 3) eV/Å

    @classmethod
    def of(cls, record) -> Labels:
        """The labels of a FeatureRecord."""
        return cls(record.numbers, record.energy, record.forces)


def reference_labels(references: Sequence) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """(atoms per structure (B,), reference energies (B,) eV, reference forces [(n, 3) eV/Å] or None).

    ``references``: FeatureRecords with labels, or ase.Atoms whose calculator
    holds energy (and forces) results. Forces are None unless every structure has them.
    """
    n, energy, forces = [], [], []
    for r in references:
        if hasattr(r, "get_potential_energy"):  # ase.Atoms
            stored = stored_labels(r)
            e, f = stored.get("energy"), stored.get("forces")
        else:
            e, f = r.energy, r.forces
        n.append(len(r.numbers))
        energy.append(np.nan if e is None else float(e))
        forces.append(None if f is None else np.asarray(f, dtype=np.float64))
    has_f = bool(forces) and all(f is not None for f in forces)
    return np.asarray(n, dtype=float), np.asarray(energy, dtype=float), (forces if has_f else None)


class ErrorSums:
    """Energy-per-atom and force error sums added chunk by chunk (a split of 10^6 structures is scored without
    holding its predictions); :meth:`result` gives what :func:`errors` returns."""

    def __init__(self) -> None:
        self.structures = 0
        self.energy = np.zeros(2)  # sum |dE/n|, sum (dE/n)^2  (eV/atom)
        self.forces = np.zeros(3)  # sum |dF|, sum dF^2, count  (eV/Å)
        self.has_forces = True

    def add(self, pred: dict, references: Sequence) -> ErrorSums:
        """Add a chunk: ``pred`` as ``predict`` returns it and the labelled references in its order."""
        n, e_ref, f_ref = reference_labels(references)
        de = (np.asarray(pred["energy"], dtype=float) - e_ref) / n
        self.structures += len(n)
        self.energy += (np.abs(de).sum(), (de**2).sum())
        if "forces" in pred and f_ref is not None and len(f_ref):
            df = np.concatenate([np.asarray(p) - r for p, r in zip(pred["forces"], f_ref, strict=True)])
            self.forces += (np.abs(df).sum(), (df**2).sum(), df.size)
        elif len(n):
            self.has_forces = False
        return self

    def result(self) -> dict[str, float]:
        b = self.structures
        out = {"energy_mae": float(self.energy[0] / b) if b else float("nan"),
               "energy_rmse": float(np.sqrt(self.energy[1] / b)) if b else float("nan"), "n_structures": b}  # fmt: skip
        if self.has_forces and self.forces[2]:
            out.update(forces_mae=float(self.forces[0] / self.forces[2]),
                       forces_rmse=float(np.sqrt(self.forces[1] / self.forces[2])))  # fmt: skip
        return out


def errors(pred: dict, references: Sequence) -> dict[str, float]:
    """Energy MAE/RMSE per atom (eV/atom) and force MAE/RMSE (eV/Å) of ``pred`` against labels.

    Args:
        pred: ``{"energy": [...] eV, "forces": [(n, 3) eV/Å, ...]}`` as ``predict`` returns.
        references: labelled FeatureRecords or ase.Atoms, in the order of ``pred``.

    Returns:
        ``energy_mae``, ``energy_rmse``, ``n_structures`` and, when both sides
        have forces, ``forces_mae`` and ``forces_rmse``.
    """
    return ErrorSums().add(pred, references).result()


__all__ = ["ErrorSums", "Labels", "errors", "reference_labels"]
