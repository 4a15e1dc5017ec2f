"""A trained potential on disk: the checkpoint directory.

Layout (every file written atomically, ``amptorch.files``):

    meta.json    format version, descriptor settings, network name and
                 options, elements, dtype, training metrics
    config.json  the validated, fully defaulted training config (when trained here)
    model.pt     the model's state dict (weights, scaler tables, energy
                 baseline), read with torch.load(weights_only=True): loading
                 a checkpoint cannot execute code
    uq.json, ensemble.pt, latent_*.npy
                 the uncertainty state, when there is one (``amptorch.uq.state``:
                 ensemble members, stored training latents, calibrations),
                 read on first use of ``TrainedPotential.uq``, never with pickle
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from amptorch.descriptors.record import N_Z
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


MAX_PARAMETERS = 2e9  # network weights a checkpoint may ask for (16 GB in float64)


def _bad(path: Path, field: str, text: str) -> InputError:
    """The one-line error for ``field`` (e.g. "meta.json network.options") of the checkpoint at ``path``."""
    return InputError(f"checkpoint {path}: {field}: {text}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_meta(path: Path) -> dict:
    """meta.json of the checkpoint dir ``path`` as a dict, or InputError naming the file (JSON, not a mapping)."""
    meta_file = path / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
    except UnicodeDecodeError:
        raise _bad(path, "meta.json", "not UTF-8 text; expected the JSON file amptorch wrote") from None
    except json.JSONDecodeError as err:
        raise _bad(
            path, "meta.json", f"not valid JSON ({err.msg} at line {err.lineno}); expected the JSON file amptorch wrote"
        ) from None
    if not isinstance(meta, dict):
        raise _bad(path, "meta.json", f"holds a {type(meta).__name__}; expected a JSON object")
    return meta


def check_meta(path: Path, meta: dict) -> None:
    """InputError unless meta.json has every key ``load`` reads, with the right types."""
    if meta.get("format") != FORMAT:
        raise InputError(
            f"{path} has format {meta.get('format')!r} (amptorch {meta.get('amptorch_version')}); "
            f"this amptorch reads format {FORMAT}",
            "checkpoint",
        )
    expected = {
        "descriptor": (dict, "the descriptor's settings (an object with 'kind')"),
        "descriptor_hash": (str, "the descriptor's sha256 (a string)"),
        "network": (dict, "an object with 'name' and 'options'"),
        "n_features": (int, "a positive integer"),
        "dtype": (str, f"one of {sorted(DTYPES)}"),
    }
    for key, (kind, text) in expected.items():
        if key not in meta:
            raise _bad(path, f"meta.json {key}", f"missing; expected {text}")
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _bad(path, f"meta.json {key}", f"got {value!r:.60}; expected {text}")
    if meta["n_features"] < 1:
        raise _bad(path, "meta.json n_features", f"got {meta['n_features']!r}; expected a positive integer")
    if meta["dtype"] not in DTYPES:
        raise _bad(path, "meta.json dtype", f"got {meta['dtype']!r}; expected one of {sorted(DTYPES)}")
    net = meta["network"]
    if not isinstance(net.get("name"), str):
        raise _bad(path, "meta.json network.name", f"got {net.get('name')!r:.60}; expected 'singlenn' or 'bpnn'")
    options = net.get("options")
    if not isinstance(options, dict):
        raise _bad(path, "meta.json network.options", f"got {options!r:.60}; expected an object of network options")
    elements = options.get("elements")
    if not isinstance(elements, list) or not elements or not all(_is_int(z) and 1 <= z < 119 for z in elements):
        raise _bad(
            path, "meta.json network.options.elements", f"got {elements!r:.60}; expected a list of atomic numbers"
        )
    for key in ("hidden_layers", "num_layers", "num_nodes"):
        v = options.get(key)
        ok = (
            v is None
            or (_is_int(v) and v >= 1)
            or (key == "hidden_layers" and isinstance(v, list) and v and all(_is_int(w) and w >= 1 for w in v))
        )
        if not ok:
            raise _bad(path, f"meta.json network.options.{key}", f"got {v!r:.60}; expected positive integers")


def _read_weights(path: Path) -> dict:
    """model.pt as a state dict, memory-mapped (nothing is read until used); InputError if damaged."""
    try:
        try:
            state = torch.load(path / "model.pt", map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            # torch's legacy (non-zip) format cannot be memory-mapped: read it whole
            state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, pickled objects: one line, no traceback
        first = (str(err).splitlines() or [type(err).__name__])[0][:80]
        raise _bad(
            path,
            "model.pt",
            f"cannot be read, truncated or damaged ({first}); expected the weights file amptorch wrote",
        ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise _bad(path, "model.pt", "holds no state dict of named tensors; expected the weights file amptorch wrote")
    return state


def _check_weights(path: Path, meta: dict, state: dict) -> None:
    """InputError unless model.pt's tensors have exactly the shapes meta.json's network asks for.

    The network is first built on the "meta" device (shapes only, nothing allocated), so meta.json
    cannot ask for more memory than model.pt holds; every weight must also be finite.
    """
    net = meta["network"]
    n_features = meta["n_features"]
    try:
        with torch.device("meta"):
            shapes = {f"network.{k}": tuple(v.shape) for k, v in
                      build_model(net["name"], n_features, **net["options"]).state_dict().items()}  # fmt: skip
    except InputError as err:
        raise err.within(f"checkpoint {path}: meta.json network") from None
    except Exception as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise _bad(path, "meta.json network", f"cannot build this network ({first})") from None
    n_params = sum(math.prod(s) for s in shapes.values())
    shapes.update({"feature_shift": (N_Z, n_features), "feature_scale": (N_Z, n_features), "energy_refs": (N_Z,),
                   "energy_scale": ()})  # fmt: skip
    for key, shape in shapes.items():
        if key not in state:
            raise _bad(path, "model.pt", f"has no {key!r}; expected the weights of meta.json's network")
        if tuple(state[key].shape) != shape:
            raise _bad(
                path, "meta.json network",
                f"{key} has shape {tuple(state[key].shape)} in model.pt but meta.json's network gives {shape}; "
                "expected matching files (edited meta.json?)",
            )  # fmt: skip
    if n_params > MAX_PARAMETERS:  # model.pt holds them all: a real file this big is refused too
        raise _bad(
            path, "meta.json network.options",
            f"asks for {n_params:.3g} weights; expected at most {MAX_PARAMETERS:.0e}",
        )  # fmt: skip
    extra = sorted(set(state) - set(shapes))
    if extra:
        raise _bad(path, "model.pt", f"holds {extra[0]!r}, which meta.json's network has not; expected matching files")
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise _bad(path, "model.pt", f"{key} holds NaN or inf; expected finite weights")


def load(path: str | Path, device: str | torch.device = "cpu") -> TrainedPotential:
    """Read a checkpoint directory (or its model.pt / meta.json); GPU checkpoints load on CPU.

    Everything is checked before the model is allocated: meta.json's keys and types, model.pt's
    tensors against the network meta.json asks for (shapes, finite values), and the descriptor
    settings against the stored descriptor_hash; each problem is one InputError naming the
    checkpoint and the field.
    """
    path = Path(path)
    if path.is_file():
        path = path.parent
    meta_file, weights = path / "meta.json", path / "model.pt"
    if not meta_file.is_file() or not weights.is_file():
        raise InputError(f"{path} has no meta.json and model.pt; expected a run's checkpoint dir", "checkpoint")
    meta = read_meta(path)
    check_meta(path, meta)
    try:
        descriptor = from_settings(meta["descriptor"])
    except InputError as err:
        field = (err.path or "").removeprefix("descriptor settings").strip() or None
        raise InputError(err.message, field).within(f"checkpoint {path}: meta.json descriptor") from None
    if descriptor.hash != meta["descriptor_hash"]:
        raise _bad(
            path, "meta.json descriptor",
            f"the settings do not match descriptor_hash {meta['descriptor_hash'][:12]!r} (they give "
            f"{descriptor.hash[:12]!r}); expected the settings the model was trained with (edited meta.json?)",
        )  # fmt: skip
    if descriptor.length != meta["n_features"]:
        raise _bad(
            path, "meta.json n_features",
            f"got {meta['n_features']}; the descriptor gives {descriptor.length} features",
        )  # fmt: skip
    state = _read_weights(path)
    _check_weights(path, meta, state)
    net = build_model(meta["network"]["name"], meta["n_features"], **meta["network"]["options"])
    # cast before loading: load_state_dict copies into the existing (float32) parameters,
    # which would round float64 weights
    model = AtomisticModel(net).to(dtype=DTYPES[meta["dtype"]])
    model.load_state_dict(state)
    model.to(device=device)
    model.eval()
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text()) if config_file.is_file() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad(path, "config.json", "not valid JSON; expected the JSON file amptorch wrote") from None
    pot = TrainedPotential(descriptor, model, meta["network"], meta=meta, config=config)
    pot.path = path  # its uncertainty files (uq.json, ...) are read from here on first use of pot.uq
    return pot


__all__ = ["FORMAT", "check_meta", "load", "meta_of", "read_meta", "save"]
