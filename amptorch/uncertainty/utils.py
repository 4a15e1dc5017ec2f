"""The original AmpTorch's ``amptorch.uncertainty.utils`` names, over :mod:`amptorch.uq`.

Distances are the core's k-nearest-neighbour distances (``amptorch.uq.latent``),
conformal calibration is :class:`amptorch.uq.conformal.ConformalCalibrator`;
what is left here is the original's bookkeeping (per-structure mean
representations, its calibration/test split, its two summary numbers) and the
Gaussian-NLL fit of σ = s1 + s2 d that crashed in the original.

Residuals are ``predicted - reference`` energies, eV per structure, as in the original.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from amptorch.errors import InputError


def _matrix(x, name: str) -> np.ndarray:
    """``x`` as a finite 2-D float64 array (rows: structures); InputError naming ``name`` otherwise."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or len(a) == 0:
        raise InputError(f"{name}: got shape {a.shape}; expected a non-empty (n, d) array")
    if not np.isfinite(a).all():
        raise InputError(f"{name}: contains NaN or inf; expected finite values")
    return a


def _vector(x, name: str, positive: bool = False) -> np.ndarray:
    """``x`` as a finite 1-D float64 array (strictly positive when ``positive``)."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if len(a) == 0 or not np.isfinite(a).all():
        raise InputError(f"{name}: expected a non-empty array of finite values")
    if positive and (a <= 0).any():
        raise InputError(f"{name}: {int((a <= 0).sum())} value(s) <= 0; expected distances > 0")
    return a


def calc_dist(train_X, calib_X, nearest_neighbors: int = 10) -> np.ndarray:
    """(m,) mean distance of each row of ``calib_X`` (m, d) to its ``nearest_neighbors`` nearest rows of
    ``train_X`` (n, d), both standardized with the training rows' mean and standard deviation (the
    original's recipe; a constant column is left unscaled)."""
    train = _matrix(train_X, "train_X")
    query = _matrix(calib_X, "calib_X")
    if query.shape[1] != train.shape[1]:
        raise InputError(f"calib_X: {query.shape[1]} columns; expected {train.shape[1]} as train_X")
    if not (isinstance(nearest_neighbors, int) and 1 <= nearest_neighbors <= len(train)):
        raise InputError(f"nearest_neighbors: got {nearest_neighbors!r}; expected an integer in 1..{len(train)} "
                         "(the number of training rows)")  # fmt: skip
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    return knn_mean_distance((train - mean) / std, (query - mean) / std, nearest_neighbors)


def knn_mean_distance(train: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """(m,) mean Euclidean distance of each query row to its ``k`` nearest training rows: the core's
    latent-distance index (:class:`amptorch.uq.LatentDistance`) with every row under one label."""
    from amptorch.uq.latent import LatentDistance

    index = LatentDistance(k=k)
    index.set_latents(train, np.zeros(len(train), dtype=np.int64))
    return index.distances(query, np.zeros(len(query), dtype=np.int64))


class ConformalPrediction:
    """Split conformal calibration of a heuristic σ: ``fit`` finds q̂, the ⌈(n+1)(1-α)⌉/n quantile of
    |residual| / σ on calibration data; ``predict`` gives the half-widths σ q̂."""

    def __init__(self, alpha: float):
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise InputError(f"alpha: got {alpha!r}; expected 0 < alpha < 1 (0.1 for 90 % intervals)")
        self.alpha = float(alpha)

    def fit(self, residuals_calib, heurestic_uncertainty_calib) -> None:
        from amptorch.uq.conformal import ConformalCalibrator

        res = _vector(residuals_calib, "residuals_calib")
        sigma = _vector(heurestic_uncertainty_calib, "heurestic_uncertainty_calib", positive=True)
        if len(res) != len(sigma):
            raise InputError(f"heurestic_uncertainty_calib: {len(sigma)} values; expected {len(res)}, one per "
                             "calibration residual")  # fmt: skip
        self.calibrator = ConformalCalibrator(coverage=1.0 - self.alpha, mode="normalized")
        self.calibrator.fit(sigma, np.abs(res))
        self.qhat = float(self.calibrator.quantile)  # the half-width per unit σ (the calibrator's q)

    def predict(self, heurestic_uncertainty_test) -> tuple[np.ndarray, float]:
        """(half-widths in the residuals' units, q̂)."""
        if not hasattr(self, "calibrator"):
            raise InputError("ConformalPrediction.predict: not fitted; call fit(residuals, sigma) first", "predict")
        sigma = _vector(heurestic_uncertainty_test, "heurestic_uncertainty_test")
        return np.asarray(self.calibrator.half_width(sigma), dtype=np.float64), self.qhat


class NegativeLeastLikelihoodEstimator:
    """σ(d) = s1 + s2 d fitted to calibration residuals by maximum Gaussian likelihood (Nelder-Mead).

    The original minimized a function of three arguments with one (a TypeError
    at every call). Here s1, s2 >= 0 are optimized as their logarithms, so σ
    stays positive wherever d >= 0; the original's starting point (5e-8, 4) is kept.
    """

    def fit(self, calib_y, calib_dist, initParams: Sequence[float] = (5e-8, 4)) -> None:  # noqa: N803 (original)
        from scipy.optimize import minimize

        y = _vector(calib_y, "calib_y")
        d = _vector(calib_dist, "calib_dist")
        if len(y) != len(d) or (d < 0).any():
            raise InputError(f"calib_dist: {len(d)} values (min {d.min():.3g}); expected {len(y)} distances >= 0, "
                             "one per residual")  # fmt: skip
        self.calib_y, self.calib_dist = y, d
        start = np.log(np.maximum(np.asarray(initParams, dtype=np.float64), 1e-12))
        # an RMS-sized s1 is a better start than 5e-8 when residuals are large; both are tried
        rms = float(np.sqrt(np.mean(y**2))) or 1e-12
        best = min((minimize(self._nll_log, x0, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9,
                                                                              "maxiter": 4000})
                    for x0 in (start, np.log([rms, 1e-12 + rms / max(float(d.mean()), 1e-12)]))),
                   key=lambda r: r.fun)  # fmt: skip
        self.s1, self.s2 = (float(v) for v in np.exp(best.x))

    def predict(self, test_dist) -> np.ndarray:
        """σ (residuals' units) at distances ``test_dist``."""
        if not hasattr(self, "s1"):
            raise InputError("NegativeLeastLikelihoodEstimator.predict: not fitted; call fit first", "predict")
        return self.s1 + _vector(test_dist, "test_dist") * self.s2

    def gaussian(self, params: Sequence[float], calib_y=None, calib_dist=None) -> float:
        """Negative log-likelihood of residuals under N(0, (s1 + s2 d)^2); ``params`` = (s1, s2)."""
        from scipy import stats

        y = self.calib_y if calib_y is None else _vector(calib_y, "calib_y")
        d = self.calib_dist if calib_dist is None else _vector(calib_dist, "calib_dist")
        scale = params[0] + d * params[1]
        if (scale <= 0).any():
            return np.inf
        return float(-np.sum(stats.norm.logpdf(y, loc=0, scale=scale)))

    def _nll_log(self, log_params: np.ndarray) -> float:
        return self.gaussian(np.exp(log_params))


def check_fraction(per_calib) -> float:
    """``per_calib`` checked: a fraction strictly between 0 and 1."""
    if isinstance(per_calib, bool) or not isinstance(per_calib, (int, float)) or not 0 < per_calib < 1:
        raise InputError(f"per_calib: got {per_calib!r}; expected a fraction 0 < per_calib < 1")
    return float(per_calib)


def split_indices(n: int, per_calib: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(test, calibration) indices of ``n`` items: the original's split (a seeded permutation, the first
    ``round(per_calib n)`` for calibration), without touching numpy's global random state."""
    check_fraction(per_calib)
    n_calib = round(per_calib * n)
    if n_calib < 1 or n_calib >= n:
        raise InputError(f"per_calib: {per_calib} of {n} test structures leaves {n_calib} for calibration and "
                         f"{n - n_calib} for testing; expected at least one of each")  # fmt: skip
    order = np.random.RandomState(seed).permutation(n)  # the legacy stream the original's np.random.seed used
    return order[n_calib:], order[:n_calib]


def split_test_calib(full_test_X, full_test_y, per_calib: float, seed: int = 0):
    """The original's split: ``(test_X, test_y, calib_X, calib_y)`` as lists."""
    if len(full_test_X) != len(full_test_y):
        raise InputError(f"full_test_y: {len(full_test_y)} values; expected {len(full_test_X)}")
    test, calib = split_indices(len(full_test_X), per_calib, seed)
    return ([full_test_X[i] for i in test], [full_test_y[i] for i in test],
            [full_test_X[i] for i in calib], [full_test_y[i] for i in calib])  # fmt: skip


def _energies(images) -> np.ndarray:
    from amptorch.uncertainty import _reference

    return _reference(images, "images")


def check_latent_layer(get_latent) -> None:
    """Our networks expose the last hidden activations (the original's ``model_net[-2]``) only."""
    if get_latent != -2:
        raise InputError(f"get_latent: got {get_latent!r}; expected -2 (the last hidden layer's activations, "
                         "the only latent layer this package exposes)")  # fmt: skip


def prepare_latentNerror_from_trainer(trainer, images, get_latent: int = -2) -> tuple[np.ndarray, np.ndarray]:  # noqa: N802
    """(B, H) per-structure mean of the last hidden activations and (B,) residuals (eV) of ``images``
    (``trainer``: an AtomsTrainer or a TrainedPotential)."""
    from amptorch.uncertainty import _potential

    check_latent_layer(get_latent)
    pred = _potential(trainer).predict(images, forces=False, latent=True)
    latent = np.stack([np.asarray(z).mean(axis=0) for z in pred["latent"]])
    return latent, np.asarray(pred["energy"], dtype=np.float64) - _energies(images)


def prepare_featureNerror_from_trainer(trainer, images) -> tuple[np.ndarray, np.ndarray]:  # noqa: N802
    """(B, F) per-structure mean fingerprint and (B,) residuals (eV) of ``images``."""
    from amptorch.uncertainty import _potential

    pred = _potential(trainer).predict(images, forces=False, descriptors=True)
    features = np.stack([np.asarray(f).mean(axis=0) for f in pred["descriptors"]])
    return features, np.asarray(pred["energy"], dtype=np.float64) - _energies(images)


def calc_uncertainty_metrics(list_epa, uncertainty) -> tuple[float, float]:
    """(fraction of |residual| > half-width, mean half-width): the original's "calibration" (α when the
    intervals are calibrated) and "sharpness"."""
    res = _vector(list_epa, "list_epa")
    half = _vector(uncertainty, "uncertainty")
    if len(res) != len(half):
        raise InputError(f"uncertainty: {len(half)} values; expected {len(res)}, one per residual")
    return float(np.mean(np.abs(res) > half)), float(np.mean(half))


__all__ = [
    "ConformalPrediction",
    "NegativeLeastLikelihoodEstimator",
    "calc_dist",
    "calc_uncertainty_metrics",
    "check_fraction",
    "check_latent_layer",
    "knn_mean_distance",
    "prepare_featureNerror_from_trainer",
    "prepare_latentNerror_from_trainer",
    "split_indices",
    "split_test_calib",
]
