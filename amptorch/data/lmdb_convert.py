"""Convert an LMDB written by the original AmpTorch (pickled records) into ours (:func:`write_lmdb`).

The original stored one pickled torch_geometric ``Data`` per key ``"0"`` ..
``"N-1"`` (``fingerprint`` (n, F), ``atomic_numbers`` (n,), ``energy``,
``forces`` (n, 3), ``fprimes``: sparse (n F, 3 n) d fingerprint / d r), all
already scaled by its ``feature_scaler`` and ``target_scaler`` (also pickled),
plus ``length``, ``elements`` and ``descriptor_setup`` = (fp_scheme,
fp_params, cutoff_params, elements).

Unpickling runs code named in the file, so every value is read by
:class:`RestrictedUnpickler`: only numpy arrays and dtypes, torch's tensor
rebuild functions (storages through ``torch.load(weights_only=True)``), an
``OrderedDict`` and, in place of torch_geometric's ``Data`` / storages and the
original's scalers, inert stand-ins that only keep their state. Any other
class or function is refused (:class:`InputError`) before anything is built.

The conversion undoes the scaling (fingerprints, their derivatives, energies
and forces back in fingerprint units and eV), keeps the derivative pair blocks
i != j (the self terms follow from translation invariance) and writes our
records with the descriptor of ``descriptor_setup``. The original stored no
positions or cell: the converted records have no strain derivatives and no
cell (stress cannot be trained from them).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings
from collections import OrderedDict

import numpy as np

from amptorch.data.lmdb import METADATA_KEY, _drop_reader, _is_open, _reader, read_metadata, write_lmdb
from amptorch.descriptors import Descriptor, FeatureRecord
from amptorch.descriptors.registry import by_scheme
from amptorch.errors import InputError, where


class _Inert:
    """Stands in for a torch_geometric Data / storage or one of the original's scalers: keeps its state only."""

    def __init__(self, *args, **kwargs):
        self.__dict__["state"] = dict(kwargs)

    @property
    def state(self) -> dict:
        return self.__dict__.setdefault("state", {})  # NEWOBJ builds without __init__

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple):  # (dict state, slots state)
            state = {k: v for part in state if isinstance(part, dict) for k, v in part.items()}
        self.state.update(state if isinstance(state, dict) else {})

    def fields(self) -> dict:
        """The record's attributes (torch_geometric 1.x keeps them in ``__dict__``, 2.x in ``_store._mapping``)."""
        out = dict(self.state)
        store = out.pop("_store", None)
        if isinstance(store, _Inert):
            out.update(store.state.get("_mapping", {}))
        out.update(out.pop("_mapping", {}) or {})
        return out


def _torch_storage_from_bytes(b: bytes):
    import torch

    return torch.load(io.BytesIO(b), weights_only=True)  # torch's own restricted unpickler


def _allowed() -> dict[tuple[str, str], object]:
    import torch
    import torch._utils
    import torch.serialization

    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch", "Size"): torch.Size,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_sparse_tensor"): torch._utils._rebuild_sparse_tensor,
        ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
        ("torch.storage", "_load_from_bytes"): _torch_storage_from_bytes,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    for core in ("numpy.core", "numpy._core"):  # the names pickles from numpy 1 and 2 use
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    for module, name in (("torch_geometric.data.data", "Data"), ("torch_geometric.data.storage", "GlobalStorage"),
                         ("torch_geometric.data.storage", "BaseStorage"), ("torch_geometric.data", "Data"),
                         ("amptorch.preprocessing.utils", "FeatureScaler"),
                         ("amptorch.preprocessing.utils", "TargetScaler"),
                         # the original's example script run on this package: our records, unscaled
                         ("amptorch.preprocessing", "DataRecord"), ("amptorch.preprocessing", "FeatureScaler"),
                         ("amptorch.preprocessing", "TargetScaler"), ("amptorch.data.scaling", "FeatureScaler"),
                         ("amptorch.data.baseline", "EnergyBaseline")):  # fmt: skip
        allowed[(module, name)] = _Inert
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only what the original's LMDB entries hold (see the module docstring); refuses the rest."""

    def __init__(self, file, what: str = "entry"):
        super().__init__(file)
        self.what = what
        self._allowed = _allowed()

    def find_class(self, module: str, name: str):
        found = self._allowed.get((module, name))
        if found is None:
            raise InputError(
                f"{self.what}: refers to {module}.{name}; expected only numpy arrays, torch tensors and the "
                "original AmpTorch's records and scalers (nothing else is unpickled)"
            )
        return found

    def persistent_load(self, pid):
        raise InputError(f"{self.what}: persistent reference {pid!r}; expected a plain pickle")


def restricted_loads(blob: bytes, what: str = "entry"):
    """``pickle.loads`` through :class:`RestrictedUnpickler`; sparse tensors (the original's fprimes) are
    checked for valid indices as they are rebuilt, so a crafted file cannot index out of bounds."""
    import torch

    try:
        with torch.sparse.check_sparse_tensor_invariants():
            return RestrictedUnpickler(io.BytesIO(bytes(blob)), what).load()
    except (RuntimeError, IndexError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{what}: not a valid record of the original AmpTorch ({str(err).splitlines()[0]})") from None


def _array(value, dtype=np.float64) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        value = value.to_dense() if value.is_sparse else value
        value = value.numpy()
    return np.asarray(value, dtype=dtype)


class _Unscale:
    """The inverse of the original's feature and target scaling, from their pickled state (identity if absent)."""

    def __init__(self, feature: _Inert | None, target: _Inert | None):
        f = feature.state if isinstance(feature, _Inert) else {}
        t = target.state if isinstance(target, _Inert) else {}
        self.transform = f.get("transform")
        if f.get("elementwise", True) and "scales" in f:
            self.scales = {int(z): (_array(s["offset"]), _array(s["scale"])) for z, s in f["scales"].items()}
        elif "scale" in f:
            self.scales = {None: (_array(f["scale"]["offset"]), _array(f["scale"]["scale"]))}
        else:
            self.scales = {}
        self.mean = float(_array(t.get("target_mean", 0.0)))
        self.std = float(_array(t.get("target_std", 1.0)))
        self.forces = bool(t.get("forcetraining", True))

    def _tables(self, numbers: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
        offset = np.zeros((len(numbers), n_features))
        scale = np.ones((len(numbers), n_features))
        for k, z in enumerate(numbers.tolist()):
            o, s = self.scales.get(z, self.scales.get(None, (offset[k], scale[k])))
            offset[k], scale[k] = o, s
        return offset, scale

    def features(self, fp: np.ndarray, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw features (n, F), d raw / d scaled per row (n, F))."""
        if not self.scales:
            return fp, np.ones_like(fp)
        offset, scale = self._tables(numbers, fp.shape[1])
        if self.transform == "standardize":  # scaled = (raw - offset) / scale
            return fp * scale + offset, scale
        return (fp - offset) / scale, 1.0 / scale  # normalize: scaled = raw * scale + offset


def _pair_blocks(fprimes, n: int, n_features: int, factor: np.ndarray):
    """Sparse (n F, 3 n) d scaled[i, f] / d r[j, x] -> pair_i, pair_j (p,), dfeat (p, F, 3) raw, j != i."""
    dense = _array(fprimes).reshape(n, n_features, n, 3) * factor[:, :, None, None]
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and np.any(dense[i, :, j])]
    pair_i = np.array([p[0] for p in pairs], dtype=np.int64)
    pair_j = np.array([p[1] for p in pairs], dtype=np.int64)
    dfeat = dense[pair_i, :, pair_j] if pairs else np.zeros((0, n_features, 3))
    return pair_i, pair_j, np.ascontiguousarray(dfeat)


def convert_record(data, unscale: _Unscale, index: int) -> FeatureRecord:
    """One original record (an unpickled stand-in) as our FeatureRecord, unscaled."""
    if not isinstance(data, _Inert):
        raise InputError(f"{where(index)}record: got {type(data).__name__}; expected a torch_geometric Data")
    f = data.fields()
    if "features" in f and "fingerprint" not in f:  # our DataRecord: no scaling was applied
        return FeatureRecord(**{k: v for k, v in f.items() if k in FeatureRecord.__dataclass_fields__})
    if "fingerprint" not in f or "atomic_numbers" not in f:
        raise InputError(f"{where(index)}record: no fingerprint / atomic_numbers; expected the original's records")
    numbers = _array(f["atomic_numbers"], np.int64).reshape(-1)
    features, factor = unscale.features(_array(f["fingerprint"]), numbers)
    n, n_features = features.shape
    rec = {"numbers": numbers, "features": np.ascontiguousarray(features)}
    if f.get("fprimes") is not None:
        rec["pair_i"], rec["pair_j"], rec["dfeat"] = _pair_blocks(f["fprimes"], n, n_features, factor)
    if f.get("energy") is not None:
        rec["energy"] = float(_array(f["energy"]).reshape(-1)[0]) * unscale.std + unscale.mean
    if f.get("forces") is not None:
        rec["forces"] = _array(f["forces"]).reshape(n, 3) * (unscale.std if unscale.forces else 1.0)
    return FeatureRecord(**rec)


def _descriptor(setup) -> Descriptor | None:
    if setup is None:
        return None
    try:
        scheme, params, cutoff_params, elements = setup
    except (TypeError, ValueError):
        raise InputError("descriptor_setup: expected (fp_scheme, fp_params, cutoff_params, elements)") from None
    scheme = str(scheme).lower()
    cutoff = {str(k).lower(): v for k, v in cutoff_params.items()} if isinstance(cutoff_params, dict) else None
    try:
        return by_scheme(scheme).from_params(params, scheme, [str(e) for e in elements], cutoff)
    except InputError as err:
        raise err.within("descriptor_setup") from None


def read_original_lmdb(path: str | os.PathLike) -> tuple[list[FeatureRecord], Descriptor | None]:
    """The records (unscaled) and the descriptor of an LMDB written by the original AmpTorch."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path!r}: no such file; expected an LMDB file written by the original AmpTorch")
    opened = not _is_open(path)
    env = _reader(path)  # the process's shared read-only handle (py-lmdb opens a file once per process)
    try:
        with env.begin() as txn:

            def get(key: str):
                blob = txn.get(key.encode("ascii"))
                return None if blob is None else restricted_loads(blob, f"{path} key {key!r}")

            length = get("length")
            if not isinstance(length, int) or length < 0:
                raise InputError(f"{path!r}: no 'length' entry; expected an LMDB written by the original AmpTorch")
            unscale = _Unscale(get("feature_scaler"), get("target_scaler"))
            descriptor = _descriptor(get("descriptor_setup"))
            records = []
            for k in range(length):
                data = get(str(k))
                if data is None:
                    raise InputError(f"{path!r}: key {str(k)!r} missing; expected {length} records")
                records.append(convert_record(data, unscale, k))
    finally:
        if opened:
            _drop_reader(path)
    return records, descriptor


def convert_lmdb(old: str | os.PathLike, new: str | os.PathLike, progress: bool = False,
                 overwrite: bool = False, source_sha256: str | None = None) -> dict:  # fmt: skip
    """Read the original's LMDB ``old`` (restricted unpickling) and write ours at ``new``; returns its metadata."""
    records, descriptor = read_original_lmdb(old)
    if not records:
        raise InputError(f"{os.fspath(old)!r}: no records; expected at least one")
    meta = {"converted_from": os.fspath(old), "source_sha256": source_sha256 or file_sha256(old)}
    return write_lmdb(new, records, descriptor, progress=progress, metadata=meta, overwrite=overwrite)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_original_store(path: str | os.PathLike) -> bool:
    """True if ``path`` is an LMDB file of the original AmpTorch (a ``length`` key, none of our metadata)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    opened = not _is_open(path)  # py-lmdb opens a file once per process: reuse a reader that is open already
    try:
        with _reader(path).begin() as txn:
            return txn.get(METADATA_KEY) is None and txn.get(b"length") is not None
    finally:
        if opened:
            _drop_reader(path)


def ours(paths, cache_dir: str | os.PathLike) -> list[str]:
    """``paths`` with each LMDB of the original AmpTorch replaced by its conversion to our format.

    So a config or script written for the original trains from its pickled
    stores unchanged: each is read once through :class:`RestrictedUnpickler`
    (no code runs; anything but arrays, tensors and records is refused) and
    written to ``cache_dir/{name}-{sha256[:16]}.lmdb``, reused while the
    source's bytes are the same. Our own stores pass through untouched.
    """
    out = []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else list(paths):
        path = os.fspath(path)
        if not is_original_store(path):
            out.append(path)
            continue
        sha = file_sha256(path)
        new = os.path.join(os.fspath(cache_dir), f"{os.path.basename(path)}-{sha[:16]}.lmdb")
        if not _converted(new, sha):
            os.makedirs(os.fspath(cache_dir), exist_ok=True)
            warnings.warn(
                f"lmdb {path!r}: a pickled store of the original AmpTorch; converting it (restricted unpickler) "
                f"to {new!r} (`amptorch convert-lmdb` does it once, ahead)", stacklevel=2,
            )  # fmt: skip
            convert_lmdb(path, new, overwrite=True, source_sha256=sha)
            _drop_stale(cache_dir, os.path.basename(path), keep=new)
        out.append(new)
    return out


def _drop_stale(cache_dir, name: str, keep: str) -> None:
    """Remove conversions of earlier contents of the store ``name`` (and their lock files)."""
    pattern = re.compile(rf"{re.escape(name)}-[0-9a-f]{{16}}\.lmdb(-lock)?")
    for entry in os.scandir(cache_dir):
        if pattern.fullmatch(entry.name) and not entry.path.startswith(keep):
            os.unlink(entry.path)


def _converted(path: str, sha: str) -> bool:
    """True if ``path`` is a finished conversion of the file with this sha256."""
    if not os.path.isfile(path):
        return False
    try:
        meta = read_metadata(path)
    except InputError:
        return False
    return meta.get("source_sha256") == sha and meta.get("count") == meta.get("total")


__all__ = [
    "RestrictedUnpickler", "convert_lmdb", "convert_record", "file_sha256", "is_original_store", "ours",
    "read_original_lmdb", "restricted_loads",
]
