"""The uncertainty state a potential holds, and its files in the checkpoint directory.

Files (next to meta.json / model.pt; none is read with pickle):

    uq.json              format, ensemble info, latent settings, dropout samples,
                         calibrations per method (written last: it commits the rest)
    ensemble.pt          stacked member weights, name → (M, ...) tensors
                         (torch.load(weights_only=True))
    latent_vectors.npy   (n, H) float32 stored training latents
    latent_numbers.npy   (n,) int64 their atomic numbers (np.load(allow_pickle=False))
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from amptorch.errors import InputError
from amptorch.files import atomic_write, write_json
from amptorch.uq.base import check_method
from amptorch.uq.conformal import Calibration
from amptorch.uq.dropout import DEFAULT_SAMPLES, MCDropout
from amptorch.uq.ensemble import Ensemble
from amptorch.uq.latent import LatentDistance

UQ_FORMAT = 1
UQ_FILE = "uq.json"
ENSEMBLE_FILE = "ensemble.pt"
LATENT_FILES = ("latent_vectors", "latent_numbers")


class UQState:
    """The uncertainty methods of one potential: ``ensemble``, ``latent``, ``dropout`` and calibrations.

    Args:
        potential: the TrainedPotential they belong to.
    """

    def __init__(self, potential):
        self.potential = potential
        self.ensemble: Ensemble | None = None
        self.latent: LatentDistance | None = None
        self._dropout = MCDropout(DEFAULT_SAMPLES)
        self.calibrations: dict[str, Calibration] = {}

    @property
    def dropout(self) -> MCDropout:
        """The MC-dropout method (one object: set its ``seed`` to reproduce the masks of later calls)."""
        return self._dropout

    @property
    def dropout_samples(self) -> int:
        """T of MC dropout (``uq.dropout_samples`` of the training config)."""
        return self._dropout.T

    @dropout_samples.setter
    def dropout_samples(self, samples: int) -> None:
        self._dropout = MCDropout(samples, self._dropout.seed)

    @property
    def empty(self) -> bool:
        return (self.ensemble is None and self.latent is None and not self.calibrations
                and self.dropout_samples == DEFAULT_SAMPLES)  # fmt: skip

    def available(self) -> list[str]:
        """The methods this potential can give."""
        from amptorch.uq.dropout import dropout_layers

        out = [] if self.ensemble is None else ["ensemble"]
        out += ["dropout"] if dropout_layers(self.potential.model) else []
        return out + ([] if self.latent is None else ["latent"])

    def method(self, name: str):
        """The method object for ``name``; a one-line InputError when the checkpoint cannot give it."""
        name = check_method(name)
        if name == "ensemble":
            if self.ensemble is None:
                raise InputError("uncertainty 'ensemble': the checkpoint holds one network; expected a model "
                                 "trained with uq.ensemble ≥ 2")  # fmt: skip
            return self.ensemble
        if name == "latent":
            if self.latent is None:
                LatentDistance().check(self.potential)  # its own one-line error
            return self.latent
        method = self.dropout
        method.check(self.potential)
        return method

    def calibration(self, name: str) -> Calibration:
        """The fitted calibration of method ``name``; InputError before ``amptorch calibrate``."""
        name = check_method(name)
        if name not in self.calibrations:
            raise InputError(
                f"uncertainty '{name}': no calibrated intervals yet; run `amptorch calibrate CHECKPOINT calib.extxyz "
                f"--method {name}` first (or ask for raw σ)"
            )
        return self.calibrations[name]

    def predict(self, images, method: str, forces: bool = True, calibrated: bool | None = None,
                batch_size: int = 32, workers: int | None = None) -> dict:  # fmt: skip
        """Predictions with σ for structures (or FeatureRecords).

        Args:
            method: "ensemble", "dropout" or "latent".
            calibrated: True: calibrated σ (InputError before calibration); False: raw σ; None: calibrated
                where the checkpoint is calibrated for ``method``, raw otherwise.

        Returns:
            the method's dict (``energy``, ``forces``, ``energy_std`` (B,), ``forces_std`` [(n,)], ``n_atoms``)
            with ``energy_uncertainty`` (B,) eV, ``forces_uncertainty`` [(n,) eV/Å] and ``calibrated``.
        """
        name = check_method(method)
        cal = None
        if calibrated or (calibrated is None and name in self.calibrations):
            cal = self.calibration(name)
        out = self.method(name).predict(self.potential, images, forces=forces, batch_size=batch_size,
                                        workers=workers)  # fmt: skip
        if cal is not None:
            return cal.apply(out)
        out["energy_uncertainty"] = out["energy_std"].copy()
        if forces:
            out["forces_uncertainty"] = [s.copy() for s in out["forces_std"]]
        out["calibrated"] = False
        return out

    def predict_like(self, images, method: str, forces: bool = True, stress: bool = False, latent: bool = False,
                     descriptors: bool = False, progress: bool = False, batch_size: int = 32,
                     workers: int | None = None) -> dict:  # fmt: skip
        """``TrainedPotential.predict``'s dict (lists per structure) from ``method``: ``energy``, ``forces``
        (the member mean for ensembles, the plain model's otherwise), ``energy_uncertainty`` [eV],
        ``forces_uncertainty`` [(n,) eV/Å] (calibrated where calibrated), ``energy_std`` / ``forces_std``
        (raw σ) and ``calibrated``; ``stress``, ``latent``, ``descriptors`` of the plain model when asked."""
        out = self.predict(images, method, forces=forces, batch_size=batch_size, workers=workers)
        res = {"energy": out["energy"], "energies": out["energies"],
               "energy_uncertainty": [float(v) for v in out["energy_uncertainty"]],
               "energy_std": [float(v) for v in out["energy_std"]], "calibrated": out["calibrated"]}  # fmt: skip
        if forces:
            res.update(forces=out["forces"], forces_uncertainty=out["forces_uncertainty"], forces_std=out["forces_std"])
        if stress or latent or descriptors:  # what the method does not give: the plain model's pass
            plain = self.potential.predict(images, forces=False, stress=stress, latent=latent, descriptors=descriptors,
                                           progress=progress, workers=workers)  # fmt: skip
            res.update({k: plain[k] for k in ("stress", "latent", "descriptors") if k in plain})
        return res

    def calibrate(self, records, method: str, coverage: float = 0.9, mode: str = "normalized") -> Calibration:
        """Fit the calibration of ``method`` on labelled records or structures (held out from training)."""
        name = check_method(method)
        pred = self.method(name).predict(self.potential, records, forces=True)
        cal = Calibration.fit(pred, records, coverage=coverage, mode=mode)
        self.calibrations[name] = cal
        return cal

    # -- files --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": UQ_FORMAT,
            "ensemble": None if self.ensemble is None else self.ensemble.to_json(),
            "latent": None if self.latent is None else self.latent.settings(),
            "dropout_samples": self.dropout_samples,
            "calibration": {k: v.to_json() for k, v in sorted(self.calibrations.items())},
        }

    def save(self, path: str | Path) -> Path:
        """Write the UQ files into checkpoint directory ``path`` (uq.json last)."""
        path = Path(path)
        if self.ensemble is not None:
            state = self.ensemble.state_dict()
            atomic_write(path / ENSEMBLE_FILE, lambda fh: torch.save(state, fh))
        if self.latent is not None:
            for name, arr in self.latent.arrays().items():
                atomic_write(path / f"{name}.npy", lambda fh, a=arr: np.save(fh, a, allow_pickle=False))
        write_json(path / UQ_FILE, self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path, potential) -> UQState:
        """The UQ state of checkpoint directory ``path`` (empty when it has no uq.json)."""
        path = Path(path)
        state = cls(potential)
        file = path / UQ_FILE
        if not file.is_file():
            return state

        def bad(field: str, text: str) -> InputError:
            return InputError(f"checkpoint {path}: {field}: {text}")

        try:
            info = json.loads(file.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad(UQ_FILE, "not valid JSON; expected the JSON file amptorch wrote") from None
        if not isinstance(info, dict) or info.get("format") != UQ_FORMAT:
            raise bad(f"{UQ_FILE} format", f"got {info.get('format') if isinstance(info, dict) else info!r:.40}; "
                      f"expected {UQ_FORMAT}")  # fmt: skip
        samples = info.get("dropout_samples", DEFAULT_SAMPLES)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
            raise bad(f"{UQ_FILE} dropout_samples", f"got {samples!r}; expected an integer ≥ 2")
        state.dropout_samples = samples
        if info.get("ensemble") is not None:
            tensors = _read_tensors(path / ENSEMBLE_FILE, bad)
            try:
                state.ensemble = Ensemble.from_state(potential.network, potential.descriptor.length, tensors,
                                                     info["ensemble"], potential.dtype)  # fmt: skip
            except InputError as err:
                raise InputError(f"checkpoint {path}: {err}") from None
            for net in state.ensemble.networks:
                net.to(potential.device)
        if info.get("latent") is not None:
            arrays = {name: _read_array(path / f"{name}.npy", bad) for name in LATENT_FILES}
            try:
                state.latent = LatentDistance.from_state(info["latent"], arrays)
            except InputError as err:
                raise InputError(f"checkpoint {path}: {err}") from None
        calibration = info.get("calibration") or {}
        if not isinstance(calibration, dict):
            raise bad(f"{UQ_FILE} calibration", "expected an object of method → calibration")
        for name, data in calibration.items():
            try:
                state.calibrations[check_method(name, f"{UQ_FILE} calibration")] = Calibration.from_json(
                    data, f"{UQ_FILE} calibration.{name}"
                )
            except InputError as err:
                raise InputError(f"checkpoint {path}: {err}") from None
        return state


def _read_tensors(file: Path, bad) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise bad(ENSEMBLE_FILE, "missing; uq.json names an ensemble, expected its stacked weights")
    try:
        blob = io.BytesIO(file.read_bytes())
        state = torch.load(blob, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, pickled objects: one line
        first = (str(err).splitlines() or [type(err).__name__])[0][:80]
        raise bad(ENSEMBLE_FILE, f"cannot be read ({first}); expected the stacked weights amptorch wrote") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise bad(ENSEMBLE_FILE, "holds no dict of named tensors; expected the stacked weights amptorch wrote")
    return state


def _read_array(file: Path, bad) -> np.ndarray:
    if not file.is_file():
        raise bad(file.name, "missing; uq.json names stored latents, expected this array")
    try:
        return np.load(file, allow_pickle=False)
    except Exception as err:  # object arrays (pickle), truncated files
        first = (str(err).splitlines() or [type(err).__name__])[0][:80]
        raise bad(file.name, f"cannot be read ({first}); expected the .npy array amptorch wrote") from None


def load(checkpoint_dir: str | Path, device: str | torch.device = "cpu") -> UQState:
    """Load a checkpoint and its UQ state: ``amptorch.uq.load(dir).predict(images, "ensemble")``.

    The state's ``potential`` is the loaded TrainedPotential (``TrainedPotential.uq`` is this object).
    """
    from amptorch.potential.trained import TrainedPotential

    pot = TrainedPotential.load(checkpoint_dir, device=device)
    return pot.uq


__all__ = ["ENSEMBLE_FILE", "UQ_FILE", "UQ_FORMAT", "UQState", "load"]
