"""Per-element reference energies: the linear baseline the network's energies are fitted relative to.

E_total ≈ Σ_atoms refs[Z] + energy_scale · Σ_atoms NN(features). The refs are
the least-squares fit of per-atom energies on per-atom composition, so frames
of different sizes count alike (the original's TargetScaler standardized
total energies, which is wrong when the number of atoms varies).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from amptorch.data.streaming import EnergyStats
from amptorch.descriptors.record import N_Z, FeatureRecord
from amptorch.errors import InputError


class EnergyBaseline:
    """Per-element reference energies and the scale of what is left.

    Args:
        ridge: relative ridge added to the normal equations, so that
            collinear compositions (e.g. every frame H2O: H = 2 O) still give
            a unique, small answer; 1e-10 of the mean diagonal by default.
        floor: smallest ``energy_scale`` (eV/atom).

    Attributes (after ``fit``):
        refs: (119,) float64 eV/atom, indexed by atomic number (0 for
            elements absent from the training data).
        energy_scale: std (eV/atom) of the per-atom residual energies
            (E - Σ refs[Z]) / n over the training frames, at least ``floor``.
        elements: atomic numbers seen in ``fit``.
    """

    def __init__(self, ridge: float = 1e-10, floor: float = 1e-3):
        if not (np.isfinite(ridge) and ridge >= 0):
            raise InputError(f"baseline.ridge: got {ridge!r}; expected a number >= 0")
        if not (np.isfinite(floor) and floor > 0):
            raise InputError(f"baseline.floor: got {floor!r}; expected a positive number (eV/atom)")
        self.ridge = float(ridge)
        self.floor = float(floor)
        self.refs = np.zeros(N_Z, dtype=np.float64)
        self.energy_scale = 1.0
        self.elements: list[int] = []

    def fit(self, records: Iterable[FeatureRecord]) -> EnergyBaseline:
        """Fit on records (the training split; any iterable, read once) that carry energies. Returns self."""
        return self.fit_stats(EnergyStats().update_records(records))

    def fit_stats(self, stats: EnergyStats) -> EnergyBaseline:
        """Fit on streamed sums (:class:`amptorch.data.streaming.EnergyStats`). Returns self.

        The refs minimize sum over frames of (E/n - sum_Z x_Z refs[Z])^2 + lam |refs|^2 (x: composition
        fractions; lam: ``ridge`` of the mean squared column norm), solved from the rows' QR factor.
        """
        if stats.structures == 0:
            raise InputError("baseline: no training structures to fit the energy baseline on")
        cols, sol, _, var = stats.solve(self.ridge)
        self.refs = np.zeros(N_Z, dtype=np.float64)
        self.refs[cols] = sol
        self.elements = [int(c) for c in cols]
        self.energy_scale = max(float(np.sqrt(var)), self.floor)
        return self

    def atom_refs(self, numbers: np.ndarray) -> np.ndarray:
        """(n,) eV: the reference energy of each atom."""
        return self.refs[np.asarray(numbers, dtype=np.int64)]

    def energy(self, numbers: np.ndarray) -> float:
        """Baseline total energy (eV) of a structure with these atomic numbers (n,)."""
        return float(self.atom_refs(numbers).sum())

    def to_dict(self) -> dict:
        """JSON-able dict (refs as a plain list) that ``from_dict`` restores exactly."""
        return {
            "ridge": self.ridge,
            "floor": self.floor,
            "refs": self.refs.tolist(),
            "energy_scale": self.energy_scale,
            "elements": list(self.elements),
        }

    @classmethod
    def from_dict(cls, d: dict) -> EnergyBaseline:
        """Inverse of ``to_dict``."""
        try:
            obj = cls(d.get("ridge", 1e-10), d.get("floor", 1e-3))
            refs = np.asarray(d["refs"], dtype=np.float64)
            obj.energy_scale = float(d["energy_scale"])
        except KeyError as err:
            raise InputError(
                f"baseline: missing key {err.args[0]!r}; expected an EnergyBaseline.to_dict() dict"
            ) from None
        if refs.shape != (N_Z,):
            raise InputError(f"baseline.refs: shape {refs.shape}; expected ({N_Z},)")
        obj.refs = refs
        obj.elements = [int(z) for z in d.get("elements", np.flatnonzero(refs).tolist())]
        return obj

    def __repr__(self) -> str:
        return f"EnergyBaseline(elements={self.elements}, energy_scale={self.energy_scale:.4g} eV/atom)"


__all__ = ["EnergyBaseline"]
