"""A trained potential on disk: the checkpoint directory.

Layout (every file written atomically, ``amptorch.files``):

    meta.json    format version, descriptor settings, network name and
                 options, elements, dtype, training metrics
    config.json  the validated, fully defaulted training config (when trained here)
    model.pt     the model's state dict (weights, scaler tables, energy
                 baseline), read with torch.load(weights_only=True): loading
                 a checkpoint cannot execute code
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from amptorch.descriptors.registry import from_settings
from amptorch.errors import InputError
from amptorch.files import atomic_write, write_json
from amptorch.models import AtomisticModel, build_model
from amptorch.potential.trained import DTYPES, TrainedPotential

FORMAT = 1


def meta_of(pot: TrainedPotential) -> dict:
    """The meta.json content of a potential."""
    from amptorch import __version__

    return {
        "format": FORMAT,
        "amptorch_version": __version__,
        "descriptor": pot.descriptor.settings(),
        "descriptor_hash": pot.descriptor.hash,
        "network": pot.network,
        "n_features": pot.descriptor.length,
        "dtype": "float32" if pot.dtype == torch.float32 else "float64",
        **{k: v for k, v in pot.meta.items() if k not in ("format", "descriptor", "network")},
    }


def save(pot: TrainedPotential, path: str | Path, weights: bool = True, config: bool = True) -> Path:
    """Write meta.json, and model.pt / config.json unless told not to, into directory ``path``.

    Args:
        weights: write model.pt (False: only the metadata changed, e.g. final metrics).
        config: write config.json when the potential has a config (False: it is already there).
    """
    path = Path(path)
    if weights:
        state = {k: v.detach().cpu() for k, v in pot.model.state_dict().items()}
        atomic_write(path / "model.pt", lambda fh: torch.save(state, fh))
    write_json(path / "meta.json", meta_of(pot))
    if config and pot.config is not None:
        write_json(path / "config.json", pot.config)
    return path


def load(path: str | Path, device: str | torch.device = "cpu") -> TrainedPotential:
    """Read a checkpoint directory (or its model.pt / meta.json); GPU checkpoints load on CPU."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    meta_file, weights = path / "meta.json", path / "model.pt"
    if not meta_file.is_file() or not weights.is_file():
        raise InputError(f"{path} has no meta.json and model.pt; expected a run's checkpoint dir", "checkpoint")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise InputError(
            f"{path} has format {meta.get('format')!r} (amptorch {meta.get('amptorch_version')}); "
            f"this amptorch reads format {FORMAT}",
            "checkpoint",
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
    return TrainedPotential(descriptor, model, meta["network"], meta=meta, config=config)


__all__ = ["FORMAT", "load", "meta_of", "save"]
