"""A trained potential on disk and in memory: descriptor + model + metadata.

Layout of a checkpoint directory (every file written atomically):

    meta.json    format version, descriptor settings, network name and
                 options, elements, dtype, training metrics
    config.json  the validated, fully defaulted training config
    model.pt     the model's state dict (weights, scaler tables, energy
                 baseline), read with torch.load(weights_only=True): loading
                 a checkpoint cannot execute code

``TrainedPotential.predict`` is the one prediction path used by
``AtomsTrainer.predict``, the ASE calculator and the CLI.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amptorch.data import collate, featurize, read_structures
from amptorch.descriptors import Descriptor, from_settings
from amptorch.errors import InputError
from amptorch.models import AtomisticModel, build_model

FORMAT = 1
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same directory and os.replace: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, default=str)

    atomic_write(path, w)


class TrainedPotential:
    """A descriptor and an AtomisticModel that turn ase.Atoms into energies, forces and stress.

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

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def elements(self) -> list[int]:
        return list(self.network["options"]["elements"])

    # -- prediction -----------------------------------------------------------
    def check_elements(self, numbers: np.ndarray, index: int | None = None) -> None:
        """InputError for elements the model never saw (BPNN has no network for them)."""
        from ase.data import chemical_symbols

        unseen = sorted(set(np.unique(numbers).tolist()) - set(self.elements))
        if unseen and self.network["name"] == "bpnn":
            where = "" if index is None else f"structure {index}: "
            raise InputError(
                f"{where}numbers: element {chemical_symbols[unseen[0]]} was not in the training data; "
                f"the model knows {[chemical_symbols[z] for z in self.elements]}"
            )

    def evaluate(self, records, forces: bool = True, stress: bool = False, latent: bool = False) -> dict:
        """Model outputs for a list of FeatureRecords, as float64 numpy arrays (batched)."""
        self.model.eval()
        batch = collate(records).to(self.device, self.dtype)
        out = self.model(batch, forces=forces, stress=stress, latent=latent, create_graph=False)
        return {k: v.detach().to("cpu", torch.float64).numpy() for k, v in out.items()}

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
        images = read_structures(images)
        for k, atoms in enumerate(images):
            self.check_elements(atoms.numbers, k)
        out: dict[str, list] = {"energy": [], "energies": []}
        if forces:
            out["forces"] = []
        if stress:
            out["stress"] = []
        if latent:
            out["latent"] = []
        if descriptors:
            out["descriptors"] = []
        np_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            records = featurize(
                chunk, self.descriptor, derivatives=forces or stress, strain=stress, dtype=np_dtype,
                workers=workers, progress=progress, with_labels=False,
            )  # fmt: skip
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
    def save(self, path: str | Path) -> Path:
        """Write meta.json, config.json and model.pt into directory ``path`` (atomically)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        from amptorch import __version__

        meta = {
            "format": FORMAT,
            "amptorch_version": __version__,
            "descriptor": self.descriptor.settings(),
            "descriptor_hash": self.descriptor.hash,
            "network": self.network,
            "n_features": self.descriptor.length,
            "dtype": "float32" if self.dtype == torch.float32 else "float64",
            **{k: v for k, v in self.meta.items() if k not in ("format", "descriptor", "network")},
        }
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        atomic_write(path / "model.pt", lambda tmp: torch.save(state, tmp))
        write_json(path / "meta.json", meta)
        if self.config is not None:
            write_json(path / "config.json", self.config)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TrainedPotential:
        """Read a checkpoint directory (or its model.pt / meta.json); GPU checkpoints load on CPU."""
        path = Path(path)
        if path.is_file():
            path = path.parent
        meta_file, weights = path / "meta.json", path / "model.pt"
        if not meta_file.is_file() or not weights.is_file():
            raise InputError(f"checkpoint: {path} has no meta.json and model.pt; expected a run's checkpoint dir")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT:
            raise InputError(
                f"checkpoint: {path} has format {meta.get('format')!r} (amptorch "
                f"{meta.get('amptorch_version')}); this amptorch reads format {FORMAT}"
            )
        descriptor = from_settings(meta["descriptor"])
        net = build_model(meta["network"]["name"], meta["n_features"], **meta["network"]["options"])
        # cast before loading: load_state_dict copies into the existing (float32) parameters,
        # which would round float64 weights
        model = AtomisticModel(net).to(dtype=DTYPES[meta["dtype"]])
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.to(device=device)
        model.eval()
        config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else None
        return cls(descriptor, model, meta["network"], meta=meta, config=config)
