"""Streaming statistics: the feature scaler's and the energy baseline's sums in one pass over records.

Both :class:`~amptorch.data.scaling.FeatureScaler` and
:class:`~amptorch.data.baseline.EnergyBaseline` fit from these accumulators
(their ``fit`` is ``fit_stats`` of one accumulator fed every record), so an
in-memory fit and a fit streamed over a store of 10^6 structures are the
same code. Blocks are merged exactly (Chan et al.'s pairwise update for mean
and M2; a QR factor for the least squares), so the result does not depend on
how the records are chunked beyond rounding, and accumulators of shards
:meth:`merge` into those of the whole set.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from amptorch.descriptors.record import N_Z
from amptorch.errors import InputError, where


def _merge_moments(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """(n, mean, M2) of two sets from their own (Chan, Golub & LeVeque); arrays broadcast over features."""
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(n > 0, n_b / np.where(n > 0, n, 1), 0.0)
    delta = mean_b - mean_a
    return n, mean_a + delta * w, m2_a + m2_b + delta * delta * n_a * w


class FeatureStats:
    """Per-element and global count, mean, M2 (sum of squared deviations), min and max of features.

    Attributes (F features, after the first update):
        count: (119,) atoms per atomic number; ``n`` all atoms.
        mean, m2, min, max: (119, F) per atomic number; ``g_mean``, ``g_m2``, ``g_min``, ``g_max`` (F,) over
            all atoms. Feature units (M2: squared).
    """

    def __init__(self) -> None:
        self.n_features: int | None = None
        self.records = 0

    def _init(self, n_features: int) -> None:
        f = n_features
        self.n_features = f
        self.count = np.zeros(N_Z, dtype=np.float64)
        self.mean = np.zeros((N_Z, f))
        self.m2 = np.zeros((N_Z, f))
        self.min = np.full((N_Z, f), np.inf)
        self.max = np.full((N_Z, f), -np.inf)
        self.n = 0.0
        self.g_mean = np.zeros(f)
        self.g_m2 = np.zeros(f)
        self.g_min = np.full(f, np.inf)
        self.g_max = np.full(f, -np.inf)

    def _checked(self, numbers, features, index: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(z (n,), x (n, F) float64 copy) of one structure or block; InputError naming ``index`` otherwise."""
        x = np.array(features, dtype=np.float64)  # a copy: a record read from LMDB views its whole buffer
        z = np.asarray(numbers, dtype=np.int64)
        if self.n_features is None:
            if x.ndim != 2:
                raise InputError(f"{where(index)}features: shape {x.shape}; expected (n_atoms, F)")
            self._init(x.shape[1])
        if x.ndim != 2 or x.shape[1] != self.n_features or x.shape[0] != z.shape[0]:
            raise InputError(f"{where(index)}features: shape {x.shape}; expected ({z.shape[0]}, {self.n_features})")
        if not np.isfinite(x).all():
            raise InputError(f"{where(index)}features: non-finite values; expected finite fingerprints")
        return z, x

    def update(self, numbers: np.ndarray, features: np.ndarray, index: int | None = None) -> FeatureStats:
        """Add atoms: ``numbers`` (n,) atomic numbers and ``features`` (n, F) of one structure or a block of
        atoms (``index``: the structure's number in error messages). Returns self."""
        return self._add(*self._checked(numbers, features, index))

    def _add(self, z: np.ndarray, x: np.ndarray) -> FeatureStats:
        if x.shape[0] == 0:
            return self
        self.n, self.g_mean, self.g_m2 = _merge_moments(self.n, self.g_mean, self.g_m2, *self._moments(x))
        np.minimum(self.g_min, x.min(axis=0), out=self.g_min)
        np.maximum(self.g_max, x.max(axis=0), out=self.g_max)
        order = np.argsort(z, kind="stable")
        elements, starts = np.unique(z[order], return_index=True)
        for el, block in zip(elements, np.split(x[order], starts[1:]), strict=True):
            n, mean, m2 = _merge_moments(self.count[el], self.mean[el], self.m2[el], *self._moments(block))
            self.count[el], self.mean[el], self.m2[el] = n, mean, m2
            np.minimum(self.min[el], block.min(axis=0), out=self.min[el])
            np.maximum(self.max[el], block.max(axis=0), out=self.max[el])
        return self

    @staticmethod
    def _moments(x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        mean = x.mean(axis=0)
        return float(x.shape[0]), mean, ((x - mean) ** 2).sum(axis=0)

    def update_records(self, records: Iterable, start: int = 0, block: int = 256) -> FeatureStats:
        """Add every record's atoms (``.numbers``, ``.features``), ``block`` records per merge (each checked on
        its own: errors name the record, ``start`` being the first one's number)."""
        zs, xs = [], []
        for k, r in enumerate(records, start):
            z, x = self._checked(r.numbers, r.features, k)
            zs.append(z)
            xs.append(x)
            self.records += 1
            if len(xs) == block:
                self._add(np.concatenate(zs), np.concatenate(xs))
                zs, xs = [], []
        if xs:
            self._add(np.concatenate(zs), np.concatenate(xs))
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another accumulator's atoms (e.g. of another shard). Returns self."""
        if other.n_features is None:
            return self
        if self.n_features is None:
            self._init(other.n_features)
        if other.n_features != self.n_features:
            raise InputError(f"features: {other.n_features} per atom; expected {self.n_features}")
        self.n, self.g_mean, self.g_m2 = _merge_moments(self.n, self.g_mean, self.g_m2,
                                                        other.n, other.g_mean, other.g_m2)  # fmt: skip
        self.count, self.mean, self.m2 = _merge_moments(self.count[:, None], self.mean, self.m2,
                                                        other.count[:, None], other.mean, other.m2)  # fmt: skip
        self.count = self.count[:, 0]
        np.minimum(self.g_min, other.g_min, out=self.g_min)
        np.maximum(self.g_max, other.g_max, out=self.g_max)
        np.minimum(self.min, other.min, out=self.min)
        np.maximum(self.max, other.max, out=self.max)
        self.records += other.records
        return self


class EnergyStats:
    """What the per-element least squares of per-atom energies on composition needs, in one pass.

    Each structure is a row ``[a, y]``: its composition fractions a (119,) and energy per atom y (eV/atom).
    Kept: ``r`` the (120, 120) upper-triangular QR factor of all rows (updated by QR of [r; block]: the
    least squares equals ``lstsq`` on the rows themselves without forming normal equations), the column sums
    ``sum_a`` (119,), ``sum_y`` and the number of rows ``n``.
    """

    def __init__(self) -> None:
        self.r = np.zeros((0, N_Z + 1))
        self.sum_a = np.zeros(N_Z)
        self.sum_y = 0.0
        self.n = 0
        self._rows: list[np.ndarray] = []

    def update(self, numbers: np.ndarray, energy: float | None, index: int | None = None) -> EnergyStats:
        """Add one structure: ``numbers`` (n,) atomic numbers and its total ``energy`` (eV). Returns self."""
        if energy is None or not np.isfinite(energy):
            raise InputError(f"{where(index)}energy: got {energy!r}; expected a finite energy (eV) to fit on")
        z = np.asarray(numbers, dtype=np.int64)
        if z.size == 0:
            raise InputError(f"{where(index)}numbers: no atoms; expected at least one")
        row = np.empty(N_Z + 1)
        row[:N_Z] = np.bincount(z, minlength=N_Z) / z.size
        row[N_Z] = float(energy) / z.size
        self._rows.append(row)
        if len(self._rows) >= 4 * (N_Z + 1):  # fold a block into r: memory stays (120, 120)
            self._fold()
        return self

    @property
    def structures(self) -> int:
        """Structures added so far."""
        return self.n + len(self._rows)

    def update_records(self, records: Iterable, start: int = 0) -> EnergyStats:
        """Add every record (``.numbers``, ``.energy``); ``start``: the first record's number."""
        for k, r in enumerate(records, start):
            self.update(r.numbers, r.energy, k)
        return self

    def _fold(self) -> None:
        if not self._rows:
            return
        block = np.array(self._rows)
        self._rows = []
        self.sum_a += block[:, :N_Z].sum(axis=0)
        self.sum_y += float(block[:, N_Z].sum())
        self.n += block.shape[0]
        self.r = np.linalg.qr(np.vstack([self.r, block]), mode="r")

    def merge(self, other: EnergyStats) -> EnergyStats:
        """Add another accumulator's structures. Returns self."""
        self._fold()
        other._fold()
        self.sum_a += other.sum_a
        self.sum_y += other.sum_y
        self.n += other.n
        self.r = np.linalg.qr(np.vstack([self.r, other.r]), mode="r")
        return self

    def solve(self, ridge: float) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(columns present, refs (S,) eV/atom, mean and variance of the per-atom residuals).

        Minimizes |A s - y|^2 + lam |s|^2 with lam = ``ridge`` * |A|_F^2 / S over the S elements present.
        """
        self._fold()
        cols = np.flatnonzero(self.sum_a > 0)
        r_a, r_y = self.r[:, cols], self.r[:, N_Z]
        s = len(cols)
        lam = ridge * float((r_a * r_a).sum()) / s  # |A|_F^2 = |R_A|_F^2 (Q is orthogonal)
        sol = np.linalg.lstsq(np.vstack([r_a, np.sqrt(lam) * np.eye(s)]), np.concatenate([r_y, np.zeros(s)]),
                              rcond=None)[0]  # fmt: skip
        # |A s - y|^2 = |R_A s - r_y|^2 over every row of R (the last row holds what no s can fit)
        resid_sq = float(((r_a @ sol - r_y) ** 2).sum())
        mean = (self.sum_y - float(self.sum_a[cols] @ sol)) / self.n
        return cols, sol, mean, max(resid_sq / self.n - mean * mean, 0.0)


def stream_chunks(items, chunk: int = 256):
    """Lists of up to ``chunk`` items of ``items`` (a sequence read by index, or any iterable), in order."""
    if hasattr(items, "__len__") and hasattr(items, "__getitem__"):
        for start in range(0, len(items), chunk):
            yield [items[k] for k in range(start, min(len(items), start + chunk))]
        return
    block = []
    for item in items:
        block.append(item)
        if len(block) == chunk:
            yield block
            block = []
    if block:
        yield block


__all__ = ["EnergyStats", "FeatureStats", "stream_chunks"]
