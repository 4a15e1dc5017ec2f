"""TrainedPotential: a descriptor and an AtomisticModel that turn ase.Atoms into energies, forces and stress.

It holds everything a deployed model needs (descriptor settings, feature
scaler, energy baseline, network) and nothing of training: this package
imports neither skorch nor ``amptorch.train``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from ase.data import chemical_symbols

from amptorch.data import collate, featurize, read_structures
from amptorch.descriptors import Descriptor
from amptorch.descriptors.registry import entry_of
from amptorch.errors import InputError, where
from amptorch.models import AtomisticModel
from amptorch.potential.metrics import Labels

if TYPE_CHECKING:  # uq sits above potential: imported on use only
    from amptorch.uq.state import UQState

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def numpy_dtype(dtype: torch.dtype) -> type:
    """The numpy twin (np.float32 or np.float64) of a model's torch dtype."""
    return np.float32 if dtype == torch.float32 else np.float64


class TrainedPotential:
    """A trained potential: ``predict`` structures, ``evaluate`` records, ``save`` / ``load`` a checkpoint.

    Args:
        descriptor: the fingerprint the model was trained on.
        model: AtomisticModel (network + scalers + energy baseline).
        network: {"name": "singlenn" | "bpnn", "options": {...}} to rebuild the network.
        meta: free-form metadata saved with the checkpoint (metrics, data size).
        config: the validated training config (JSON), if any.
    """

    def __init__(
        self,
        descriptor: Descriptor,
        model: AtomisticModel,
        network: dict,
        meta: dict | None = None,
        config: dict | None = None,
    ):
        self.descriptor = descriptor
        self.model = model
        self.network = network
        self.meta = dict(meta or {})
        self.config = config
        self._warned: set[tuple[int, ...]] = set()
        self.path: Path | None = None  # the checkpoint directory it was loaded from or last saved to
        self._uq: UQState | None = None  # read on first use of .uq
        self._mean: tuple[object, AtomisticModel, AtomisticModel] | None = None  # (ensemble, model, their mean)
        self._no_ensemble: Path | None = None  # the checkpoint directory whose uq.json names no ensemble

    @property
    def uq(self) -> UQState:
        """The uncertainty methods this potential holds (``amptorch.uq.UQState``: ensemble, latent, dropout,
        calibrations), read from the checkpoint directory on first use; empty for a potential never saved."""
        if self._uq is None:
            # lazy, as the registry's twins: uq sits above potential, so nothing here imports it at load
            from amptorch.uq.state import UQState

            has_files = self.path is not None and (Path(self.path) / "uq.json").is_file()
            self._uq = UQState.load(self.path, self) if has_files else UQState(self)
        return self._uq

    @uq.setter
    def uq(self, state: UQState) -> None:
        self._uq = state

    @property
    def predictor(self) -> AtomisticModel:
        """The AtomisticModel that ``predict``, ``evaluate`` and the calculator evaluate.

        ``model`` (the checkpoint's ``model.pt``), or, for a checkpoint holding a trained ensemble
        (``uq.ensemble: M``), the members' mean: ``model``'s scaler tables and baseline over a
        :class:`~amptorch.models.MemberMean` of the M networks, the prediction the ensemble was trained for
        (deep ensembles are scored by their mean; TorchANI's ensembles predict it too). Its forces and stress
        are the members' mean forces and stress. ``model`` stays member 0: what training, fine-tuning and the
        dropout / latent methods work on.
        """
        ensemble = self._ensemble()
        base = self.model
        if ensemble is None:
            return base
        if self._mean is None or self._mean[0] is not ensemble or self._mean[1] is not base:
            from amptorch.models import MemberMean

            mean = AtomisticModel(MemberMean(ensemble.networks))
            self._mean = (ensemble, base, mean)
        mean = self._mean[2]
        for name, table in base.named_buffers(recurse=False):  # model's own tables (where they are now), never a copy
            setattr(mean, name, table)
        member = next(mean.network.parameters())
        if (member.device, member.dtype) != (self.device, self.dtype):  # (the Ensemble's vmap pass moves them too)
            mean.network.to(device=self.device, dtype=self.dtype)
        if mean.twin is not base.twin:  # recompute mode: geometry records are featured by model's twin
            mean.set_twin(base.twin)
        return mean

    def _ensemble(self):
        """The trained ensemble (``amptorch.uq.Ensemble``) this potential holds, or None. A checkpoint's UQ
        files are read only when its uq.json names an ensemble, and a uq.json that names none is read once."""
        if self._uq is None:
            if self.path is None or self._no_ensemble == self.path:
                return None
            file = Path(self.path) / "uq.json"
            try:
                names = file.is_file() and json.loads(file.read_text()).get("ensemble") is not None
            except (OSError, ValueError, AttributeError):
                names = True  # damaged: .uq reads it again and says what is wrong with it
            if not names:
                self._no_ensemble = self.path
                return None
        return self.uq.ensemble

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def np_dtype(self) -> type:
        """numpy dtype of the model's features (float32 or float64)."""
        return numpy_dtype(self.dtype)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def elements(self) -> list[int]:
        """Atomic numbers of the training data."""
        return list(self.network["options"]["elements"])

    # -- the element policy -------------------------------------------------
    def unseen_reason(self) -> str | None:
        """Why elements outside the training data are refused, or None where they are only warned about.

        A BPNN has no network for an unseen element, a SingleNN with
        ``element_outputs`` no output layer, and a descriptor with per-element
        channels (Gaussian SF) no channel; a plain SingleNN on a descriptor that
        describes any element (GMP, through its densities) can evaluate it,
        with unknown accuracy (the feature scaler falls back to its all-element
        statistics and the energy baseline to 0 eV/atom).
        """
        if self.network["name"] == "bpnn":
            return "a BPNN model has no network for it"
        if self.network["options"].get("element_outputs", False):
            return "a SingleNN with element_outputs has no output layer for it"
        if not entry_of(self.descriptor).any_element:
            return "its fingerprints have no channels for it"
        return None

    def check_elements(self, numbers: np.ndarray, index: int | None = None) -> None:
        """InputError for an element outside the training data where the model cannot describe it; else a
        warning, once per set of unseen elements (see :meth:`unseen_reason`)."""
        known = set(self.elements)
        unseen = tuple(z for z in np.unique(numbers).tolist() if z not in known)
        if not unseen:
            return
        names = [chemical_symbols[z] for z in unseen]
        known_names = [chemical_symbols[z] for z in sorted(known)]
        reason = self.unseen_reason()
        if reason is not None:
            raise InputError(
                f"{where(index)}numbers: element {names[0]} was not in the training data and {reason}; "
                f"the model knows {known_names}"
            )
        if unseen not in self._warned:
            self._warned.add(unseen)
            warnings.warn(
                f"element(s) {names} were not in the training data {known_names}; the shared SingleNN "
                "evaluates them through their GMP densities, but the accuracy is unknown",
                stacklevel=3,
            )

    # -- prediction -----------------------------------------------------------
    def evaluate(self, records, forces: bool = True, stress: bool = False, latent: bool = False) -> dict:
        """Model outputs for a list of FeatureRecords (or geometry records, on a model with a twin), as float64
        numpy arrays (batched)."""
        model = self.predictor.eval()
        batch = collate(records).to(self.device, self.dtype)
        out = model(batch, forces=forces, stress=stress, latent=latent, create_graph=False)
        return {k: v.detach().to("cpu", torch.float64).numpy() for k, v in out.items()}

    def evaluate_chunks(self, records, forces: bool = True, batch_size: int = 64) -> Iterator[tuple[dict, list]]:
        """``(predictions, labels)`` of consecutive chunks of ``batch_size`` records, each record read once
        (see :meth:`evaluate_many`): a split larger than memory is scored chunk by chunk."""
        for s in range(0, len(records), batch_size):
            chunk = records[s : s + batch_size]
            res = self.evaluate(chunk, forces=forces)
            out = {"energy": res["energy"].tolist()}
            if forces:
                out["forces"] = np.split(res["forces"], np.cumsum([r.n_atoms for r in chunk])[:-1])
            yield out, [Labels.of(r) for r in chunk]

    def evaluate_many(self, records, forces: bool = True, batch_size: int = 64) -> tuple[dict[str, list], list]:
        """Predictions and reference labels of records, reading each record once.

        Args:
            records: any sequence that slices into lists of FeatureRecords (a
                list, a lazy LMDB split).

        Returns:
            ``({"energy": [eV], "forces": [(n, 3) eV/Å]}, [Labels])``: the
            labels are what :func:`amptorch.potential.errors` and the parity
            plot read, so a split on disk is not read again to score it.
        """
        out: dict[str, list] = {"energy": [], "forces": []} if forces else {"energy": []}
        labels: list[Labels] = []
        for pred, chunk_labels in self.evaluate_chunks(records, forces, batch_size):
            for key, values in pred.items():
                out[key] += values
            labels += chunk_labels
        return out, labels

    def featurized_chunks(self, images, derivatives: bool = True, strain: bool = False, batch_size: int = 32,
                          workers: int | None = None, progress: bool = False) -> Iterator[list]:  # fmt: skip
        """FeatureRecords (no labels) of structures (a list of ase.Atoms, a file or a glob), ``batch_size`` at
        a time, after every structure is checked against the element policy (before any featurizing)."""
        images = read_structures(images)
        for k, atoms in enumerate(images):
            self.check_elements(np.asarray(atoms.numbers), k)
        for start in range(0, len(images), batch_size):
            yield featurize(images[start : start + batch_size], self.descriptor, derivatives=derivatives,
                            strain=strain, dtype=self.np_dtype, workers=workers, progress=progress,
                            with_labels=False)  # fmt: skip

    def predict(
        self,
        images,
        forces: bool = True,
        stress: bool = False,
        latent: bool = False,
        descriptors: bool = False,
        batch_size: int = 32,
        progress: bool = False,
        workers: int | None = None,
    ) -> dict[str, list]:
        """Predictions for structures (list of ase.Atoms, a file or a glob).

        Returns the original's dict: ``energy`` (list of eV), ``forces`` (list
        of (n, 3) eV/Å), plus ``energies`` (per-atom eV), ``stress`` (Voigt
        eV/Å^3, None for non-periodic structures) when asked, ``latent`` (n, H)
        and ``descriptors`` (n, F) when asked.
        """
        keys = ["energy", "energies"] + [k for k, on in
                                         (("forces", forces), ("stress", stress), ("latent", latent),
                                          ("descriptors", descriptors)) if on]  # fmt: skip
        out: dict[str, list] = {k: [] for k in keys}
        for records in self.featurized_chunks(images, forces or stress, stress, batch_size, workers, progress):
            res = self.evaluate(records, forces=forces, stress=stress, latent=latent)
            offsets = np.concatenate([[0], np.cumsum([r.n_atoms for r in records])])
            for b, rec in enumerate(records):
                sl = slice(offsets[b], offsets[b + 1])
                out["energy"].append(float(res["energy"][b]))
                out["energies"].append(res["energies"][sl])
                if forces:
                    out["forces"].append(res["forces"][sl])
                if stress:
                    s = res["stress"][b]
                    out["stress"].append(None if np.isnan(s).any() else s)
                if latent:
                    out["latent"].append(res["latent"][sl])
                if descriptors:
                    out["descriptors"].append(np.asarray(rec.features))
        return out

    # -- files ------------------------------------------------------------------
    def save(self, path: str | Path, weights: bool = True, config: bool = True) -> Path:
        """Write the checkpoint directory ``path`` (``amptorch.potential.checkpoint.save``)."""
        from amptorch.potential.checkpoint import save

        path = Path(path)
        own = self.path is not None and Path(self.path).resolve() == path.resolve()
        if self._uq is None and not own:
            if self.path is not None and (Path(self.path) / "uq.json").is_file():
                self.uq  # noqa: B018 -- read the UQ files before writing them to the new directory
            elif (path / "uq.json").is_file():  # another potential's UQ files (an ensemble it predicts with)
                from amptorch.uq.state import UQState

                self._uq = UQState(self)  # empty: its uq.json is overwritten below
        out = save(self, path, weights=weights, config=config)
        if self._uq is not None and (not self._uq.empty or (path / "uq.json").is_file()):
            self._uq.save(path)  # an emptied state overwrites the directory's old uq.json too
        self.path = path
        return out

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TrainedPotential:
        """Read a checkpoint directory (or its model.pt / meta.json); GPU checkpoints load on CPU."""
        from amptorch.potential.checkpoint import load

        return load(path, device)


__all__ = ["DTYPES", "TrainedPotential", "numpy_dtype"]
