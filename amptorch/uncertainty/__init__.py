"""The original AmpTorch's ``amptorch.uncertainty``: its estimator names and ``fit_predict`` results, over
:mod:`amptorch.uq`.

    from amptorch.uncertainty import ConformalPredictionLatentSpace
    res = ConformalPredictionLatentSpace().fit_predict(trainer, train_list, full_test_list)
    res["residuals"], res["uncertainty"], res["alpha"]     # eV per structure, test part only

As in the original, ``fit_predict`` splits ``full_test_list`` (seeded) into a
calibration part (``per_calib``) and a test part and returns, for the test part,
the residuals (predicted - reference energy, eV per structure) and the
uncertainty (eV per structure): the 1 - α interval half-width for the conformal
estimators, a Gaussian σ for the NLL ones, the member spread for the ensemble.

What differs, on purpose:

* the latent heuristic is the core's :class:`~amptorch.uq.LatentDistance`:
  each atom's mean distance to its k nearest training-atom latents of the
  same element, averaged over the structure (the original averaged the
  latents over atoms first, standardized them and took one kNN per
  structure, which blurs which atom is unusual);
* calibration runs on energies per atom (the core's convention; identical to
  the original's when all structures have the same size), the results are
  converted back to eV per structure;
* ``ConformalPredictionFeatureSpace`` and both ``NegativeLeastLikelihood*``
  estimators work (the original's raised AttributeError / TypeError); the
  feature space keeps the original's per-structure mean fingerprint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from amptorch.errors import InputError
from amptorch.uncertainty.utils import (
    ConformalPrediction,
    NegativeLeastLikelihoodEstimator,
    calc_dist,
    calc_uncertainty_metrics,
    check_fraction,
    prepare_featureNerror_from_trainer,
    prepare_latentNerror_from_trainer,
    split_indices,
    split_test_calib,
)


def _potential(trainer):
    """The trained potential behind an AtomsTrainer (or a TrainedPotential itself)."""
    from amptorch.potential import TrainedPotential

    if isinstance(trainer, TrainedPotential):
        return trainer
    pot = getattr(trainer, "potential", None)
    if pot is None:
        raise InputError("trainer: no trained model; call trainer.train() or load_pretrained(path) first")
    return pot


def _images(images, name: str) -> list:
    from amptorch.data import read_structures

    try:
        out = read_structures(images)
    except InputError as err:
        raise err.within(name) from None
    if not out:
        raise InputError(f"{name}: no structures; expected a non-empty list of labelled ase.Atoms")
    return out


def _latent_layer(get_latent) -> int:
    """The original's ``model_net`` index of a hidden activation (-2 the last, -4 the one before, ...) as our
    hidden-layer index (-1, -2, ...)."""
    if isinstance(get_latent, bool) or not isinstance(get_latent, int) or get_latent > -2 or get_latent % 2:
        raise InputError(f"get_latent: got {get_latent!r}; expected -2 (the last hidden layer's activations) or "
                         "-4, -6, ... for earlier hidden layers")  # fmt: skip
    return get_latent // 2


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"num_nearest_neighbors: got {k!r}; expected an integer >= 1")
    return k


class _SplitEstimator:
    """What the distance-based estimators share: heuristic distances, the original's calibration/test split of
    ``full_test_list``, a fit on the calibration part (per atom) and the test part's result (per structure)."""

    def __init__(self, per_calib: float = 0.1, num_nearest_neighbors: int = 10, seed: int = 1):
        check_fraction(per_calib)  # now, not after featurizing
        self.per_calib = float(per_calib)
        self.num_nearest_neighbors = _check_k(num_nearest_neighbors)
        self.seed = int(seed)

    def distances(self, trainer, train_list, full_test_list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw σ (B,), residuals (B,) eV, atom counts (B,)) of ``full_test_list``."""
        raise NotImplementedError

    def fit_interval(self, residuals_per_atom: np.ndarray, sigma_calib: np.ndarray, sigma_test: np.ndarray):
        """Half-widths or σ per atom for the test part, from the calibration part."""
        raise NotImplementedError

    def result(self, residuals: np.ndarray, uncertainty: np.ndarray) -> dict:
        return {"residuals": residuals, "uncertainty": uncertainty}

    def fit_predict(self, trainer, train_list, full_test_list) -> dict:
        """Calibrate on ``per_calib`` of ``full_test_list`` and return the rest's ``residuals`` (eV) and
        ``uncertainty`` (eV), both (B_test,) arrays in the order of the original's split."""
        train_list = _images(train_list, "train_list")
        full_test_list = _images(full_test_list, "full_test_list")
        test, calib = split_indices(len(full_test_list), self.per_calib, self.seed)  # before any featurizing
        sigma, residuals, n_atoms = self.distances(trainer, train_list, full_test_list)
        per_atom = self.fit_interval(residuals[calib] / n_atoms[calib], sigma[calib], sigma[test])
        return self.result(residuals[test], per_atom * n_atoms[test])


class _LatentSpace(_SplitEstimator):
    def __init__(self, per_calib: float = 0.1, num_nearest_neighbors: int = 10, seed: int = 1, get_latent: int = -2):
        super().__init__(per_calib, num_nearest_neighbors, seed)
        self.layer = _latent_layer(get_latent)
        self.get_latent = get_latent

    def distances(self, trainer, train_list, full_test_list):
        from amptorch.uq import LatentDistance

        pot = _potential(trainer)
        method = LatentDistance(k=self.num_nearest_neighbors, aggregate="mean", layer=self.layer, seed=self.seed)
        method.fit(pot, _records(pot, train_list))
        pred = method.predict(pot, _records(pot, full_test_list), forces=False)
        return _with_residuals(pred["energy_std"], pred["energy"], full_test_list)


class _FeatureSpace(_SplitEstimator):
    def distances(self, trainer, train_list, full_test_list):
        train_X, _ = prepare_featureNerror_from_trainer(trainer, train_list)
        test_X, residuals = prepare_featureNerror_from_trainer(trainer, full_test_list)
        if self.num_nearest_neighbors > len(train_X):
            raise InputError(f"num_nearest_neighbors: {self.num_nearest_neighbors} exceeds the {len(train_X)} "
                             "training structures")  # fmt: skip
        sigma = calc_dist(train_X, test_X, self.num_nearest_neighbors)
        return sigma, residuals, np.array([len(a) for a in full_test_list], dtype=np.float64)


class _Conformal:
    def _alpha(self, alpha) -> float:
        return ConformalPrediction(alpha).alpha  # checks it

    def fit_interval(self, residuals_per_atom, sigma_calib, sigma_test):
        if (sigma_calib <= 0).any():
            raise InputError("full_test_list: a calibration structure at distance 0 (identical to a training "
                             "one); expected structures held out from training")  # fmt: skip
        need = int(np.ceil((1 - self.alpha) / self.alpha - 1e-9))
        if len(sigma_calib) < need:
            raise InputError(f"per_calib: {self.per_calib} of the test structures gives {len(sigma_calib)} for "
                             f"calibration; a {100 * (1 - self.alpha):.0f} % interval needs at least {need}")
        cp = ConformalPrediction(self.alpha)
        cp.fit(residuals_per_atom, sigma_calib)
        self.qhat = cp.qhat
        return cp.predict(sigma_test)[0]

    def result(self, residuals, uncertainty) -> dict:
        return {"residuals": residuals, "uncertainty": uncertainty, "alpha": self.alpha}


class _Likelihood:
    def fit_interval(self, residuals_per_atom, sigma_calib, sigma_test):
        nll = NegativeLeastLikelihoodEstimator()
        nll.fit(residuals_per_atom, sigma_calib)
        self.s1, self.s2 = nll.s1, nll.s2
        return nll.predict(sigma_test)


class ConformalPredictionLatentSpace(_Conformal, _LatentSpace):
    """Split conformal intervals at 1 - ``alpha`` on the kNN latent distance (k = ``num_nearest_neighbors``).

    ``fit_predict`` returns ``residuals`` (eV), ``uncertainty`` (eV, interval half-widths) and ``alpha``.
    """

    def __init__(self, alpha: float = 0.1, per_calib: float = 0.1, num_nearest_neighbors: int = 10, seed: int = 1,
                 get_latent: int = -2):  # fmt: skip
        super().__init__(per_calib, num_nearest_neighbors, seed, get_latent)
        self.alpha = self._alpha(alpha)


class ConformalPredictionFeatureSpace(_Conformal, _FeatureSpace):
    """Split conformal intervals on the kNN distance between standardized mean fingerprints."""

    def __init__(self, alpha: float = 0.1, per_calib: float = 0.1, num_nearest_neighbors: int = 10, seed: int = 1):
        super().__init__(per_calib, num_nearest_neighbors, seed)
        self.alpha = self._alpha(alpha)


class NegativeLeastLikelihoodLatentSpace(_Likelihood, _LatentSpace):
    """Gaussian σ = s1 + s2 d on the kNN latent distance, fitted by maximum likelihood on the calibration part.

    ``fit_predict`` returns ``residuals`` (eV) and ``uncertainty`` (eV, σ per structure).
    """


class NegativeLeastLikelihoodFeatureSpace(_Likelihood, _FeatureSpace):
    """Gaussian σ = s1 + s2 d on the mean-fingerprint kNN distance (``get_latent`` accepted and unused, as in
    the original)."""

    def __init__(self, per_calib: float = 0.1, num_nearest_neighbors: int = 10, seed: int = 1, get_latent: int = -2):
        super().__init__(per_calib, num_nearest_neighbors, seed)
        self.get_latent = get_latent


class EnsembleSDEstimator:
    """Mean and spread of the residuals of independently trained models (the original's list of trainers).

    For members sharing one checkpoint (``uq.ensemble: N``), ``trainer.predict(images,
    uncertainty="ensemble")`` evaluates them in one batched pass instead.
    """

    def fit_predict(self, list_trainers: Sequence, train_list, test_list) -> dict:
        """``residuals``: member-mean prediction - reference (eV, (B,)); ``uncertainty``: the members'
        population standard deviation (eV, (B,)). ``train_list`` is unused, as in the original."""
        from amptorch.uq.base import sample_stats

        if isinstance(list_trainers, (str, bytes)) or not isinstance(list_trainers, Sequence) or not list_trainers:
            raise InputError(f"list_trainers: got {type(list_trainers).__name__}; expected a non-empty list of "
                             "trained AtomsTrainers")  # fmt: skip
        test_list = _images(test_list, "test_list")
        energies = []
        for m, trainer in enumerate(list_trainers):
            pred = _potential(trainer).predict(test_list, forces=False)
            energies.append(np.asarray(pred["energy"], dtype=np.float64))
            if energies[-1].shape != energies[0].shape:
                raise InputError(f"list_trainers[{m}]: {energies[-1].size} predictions; expected "
                                 f"{energies[0].size}")  # fmt: skip
        stats = sample_stats(np.stack(energies))
        return {"residuals": stats["energy"] - _reference(test_list, "test_list"), "uncertainty": stats["energy_std"]}


def _records(potential, images) -> list:
    """FeatureRecords of ``images`` for ``potential`` (no derivatives: the estimators use energies only)."""
    from amptorch.data import featurize

    for k, atoms in enumerate(images):
        potential.check_elements(np.asarray(atoms.numbers), k)
    return featurize(images, potential.descriptor, derivatives=False, dtype=potential.np_dtype, with_labels=False,
                     progress=False)  # fmt: skip


def _reference(images, name: str = "full_test_list") -> np.ndarray:
    """(B,) reference energies (eV): stored results, or the attached calculator run (as the original's
    ``image.get_potential_energy()``); InputError naming the structure when there is none."""
    from amptorch.data.io import labels

    try:
        return np.array([labels(a, k, forces=False)["energy"] for k, a in enumerate(images)], dtype=np.float64)
    except InputError as err:
        raise err.within(name) from None


def _with_residuals(sigma, energy, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    residuals = np.asarray(energy, dtype=np.float64) - _reference(images)
    return np.asarray(sigma, dtype=np.float64), residuals, np.array([len(a) for a in images], dtype=np.float64)


__all__ = [
    "ConformalPrediction",
    "ConformalPredictionFeatureSpace",
    "ConformalPredictionLatentSpace",
    "EnsembleSDEstimator",
    "NegativeLeastLikelihoodEstimator",
    "NegativeLeastLikelihoodFeatureSpace",
    "NegativeLeastLikelihoodLatentSpace",
    "calc_dist",
    "calc_uncertainty_metrics",
    "prepare_featureNerror_from_trainer",
    "prepare_latentNerror_from_trainer",
    "split_test_calib",
]
