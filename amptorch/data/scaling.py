"""Feature scaling fitted on the training split (the original's ``FeatureScaler``).

Represented as two (119, F) float64 tables indexed by atomic number, so that

    scaled = (features - shift[Z]) / scale[Z]

and derivatives scale the same way (d scaled / d r = dfeat / scale[Z_i]).
Models take the tables as buffers; nothing here depends on the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from amptorch.data.streaming import FeatureStats
from amptorch.descriptors.record import N_Z, FeatureRecord
from amptorch.errors import InputError

KINDS = ("normalize", "standardize")


class FeatureScaler:
    """Min-max ("normalize") or mean/std ("standardize") feature scaling.

    Args:
        kind: "normalize" maps [min, max] of the training data to ``range``;
            "standardize" gives mean 0 and standard deviation 1.
        range: (low, high) target interval for "normalize".
        elementwise: statistics per element (True, the original's default)
            or over all atoms (every row of the tables the same). Rows of
            elements absent from the training data get the global statistics.
        threshold: a spread (max - min, or std) below this counts as 1, so
            a constant feature is shifted but not blown up.

    Attributes (after ``fit``):
        shift: (119, F) float64, feature units.
        scale: (119, F) float64, feature units per scaled unit.
    """

    def __init__(
        self,
        kind: str = "normalize",
        range: Sequence[float] = (0.0, 1.0),  # noqa: A002  (the original's key)
        elementwise: bool = True,
        threshold: float = 1e-6,
    ):
        if kind not in KINDS:
            raise InputError(f"got {kind!r}; expected 'normalize' or 'standardize'", "scaling.type")
        try:
            lo, hi = (float(v) for v in range)
        except (TypeError, ValueError):
            raise InputError(f"got {range!r}; expected (low, high)", "scaling.range") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InputError(f"got {range!r}; expected finite low < high", "scaling.range")
        if not isinstance(threshold, (int, float)) or not (threshold >= 0 and math.isfinite(threshold)):
            raise InputError(f"got {threshold!r}; expected a number >= 0", "scaling.threshold")
        self.kind = kind
        self.range = (lo, hi)
        self.elementwise = bool(elementwise)
        self.threshold = float(threshold)
        self.shift: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    @classmethod
    def from_config(cls, scaling: dict | None) -> FeatureScaler:
        """From the original's ``config["dataset"]["scaling"]`` (type, range, elementwise, threshold)."""
        cfg = dict(scaling or {})
        known = {"type", "range", "elementwise", "threshold"}
        extra = sorted(set(cfg) - known)
        if extra:
            raise InputError(f"unknown key {extra[0]!r}; expected one of {sorted(known)}", "scaling")
        kind = cfg.get("type", "normalize")
        return cls(
            kind=kind.lower() if isinstance(kind, str) else kind,
            range=cfg.get("range", (0.0, 1.0)),
            elementwise=cfg.get("elementwise", True),
            threshold=cfg.get("threshold", 1e-6),
        )

    @property
    def fitted(self) -> bool:
        return self.shift is not None

    @property
    def n_features(self) -> int:
        """F of the fitted tables."""
        if self.shift is None:
            raise InputError("the FeatureScaler is not fitted; call fit(records) first", "scaling")
        return int(self.shift.shape[1])

    def _tables(self, n, mean, m2, fmin, fmax) -> tuple[np.ndarray, np.ndarray]:
        """(shift, scale) from count, mean, M2, min and max (arrays over features, or (rows, F) tables)."""
        if self.kind == "normalize":
            lo, hi = self.range
            spread = fmax - fmin
            spread = np.where(spread < self.threshold, 1.0, spread)
            scale = spread / (hi - lo)
            return fmin - lo * scale, scale
        std = np.sqrt(m2 / n)
        return mean, np.where(std < self.threshold, 1.0, std)

    def fit(self, records: Iterable[FeatureRecord]) -> FeatureScaler:
        """Fit the tables on ``records`` (the training split; any iterable, read once). Returns self."""
        return self.fit_stats(FeatureStats().update_records(records))

    def fit_stats(self, stats: FeatureStats) -> FeatureScaler:
        """Fit the tables on streamed statistics (:class:`amptorch.data.streaming.FeatureStats`). Returns self."""
        if stats.n_features is None:
            raise InputError("scaling: no training structures to fit the feature scaler on")
        if stats.n == 0:
            raise InputError("scaling: the training structures hold no atoms")
        g_shift, g_scale = self._tables(stats.n, stats.g_mean, stats.g_m2, stats.g_min, stats.g_max)
        shift = np.tile(g_shift, (N_Z, 1))
        scale = np.tile(g_scale, (N_Z, 1))
        if self.elementwise:
            rows = np.flatnonzero(stats.count > 0)
            shift[rows], scale[rows] = self._tables(stats.count[rows, None], stats.mean[rows], stats.m2[rows],
                                                    stats.min[rows], stats.max[rows])  # fmt: skip
        self.shift, self.scale = shift, scale
        return self

    def settings(self) -> dict:
        """The settings as the original's ``scaling`` dict (type, range, elementwise, threshold)."""
        return {"type": self.kind, "range": list(self.range), "elementwise": self.elementwise,
                "threshold": self.threshold}  # fmt: skip

    def to_dict(self) -> dict:
        """JSON-able dict (plain lists) that ``from_dict`` restores exactly."""
        out = self.settings()
        if self.shift is not None:
            out["shift"] = self.shift.tolist()
            out["scale"] = self.scale.tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> FeatureScaler:
        """Inverse of ``to_dict``."""
        try:
            obj = cls(d["type"], d["range"], d["elementwise"], d["threshold"])
        except KeyError as err:
            raise InputError(
                f"scaler: missing key {err.args[0]!r}; expected a FeatureScaler.to_dict() dict"
            ) from None
        if "shift" in d:
            shift = np.asarray(d["shift"], dtype=np.float64)
            scale = np.asarray(d["scale"], dtype=np.float64)
            if shift.ndim != 2 or shift.shape[0] != N_Z or scale.shape != shift.shape:
                raise InputError(f"scaler.shift: shape {shift.shape}; expected ({N_Z}, F) like scale")
            obj.shift, obj.scale = shift, scale
        return obj

    def __repr__(self) -> str:
        fitted = f", n_features={self.n_features}" if self.fitted else ""
        return (
            f"FeatureScaler(kind={self.kind!r}, range={self.range}, elementwise={self.elementwise}, "
            f"threshold={self.threshold}{fitted})"
        )


__all__ = ["FeatureScaler", "N_Z"]
