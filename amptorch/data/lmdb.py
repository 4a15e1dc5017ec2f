"""LMDB storage of FeatureRecords, for data sets larger than memory.

One database file (``subdir=False``, as the original) holds one record per
structure under the key ``"%012d" % index`` and a JSON metadata entry under
``__metadata__`` (descriptor settings and hash, counts, elements, format
version, and anything added with :func:`update_metadata`, e.g. scalers).

Records are stored without pickle, so opening a database cannot execute
code: ``MAGIC`` (8 bytes), the header length (uint64 little-endian), a JSON
header ``{"fields": [[name, dtype, shape, offset, nbytes], ...]}`` and the raw
little-endian array buffers, each 8-byte aligned.

Writing commits every ``batch_size`` structures; calling :func:`write_lmdb`
again after a kill skips the keys already written (and refuses a database
made with other descriptor settings).
"""

from __future__ import annotations

import bisect
import json
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence

import lmdb
import numpy as np
from ase import Atoms
from torch.utils.data import Dataset

from amptorch.data.featurize import featurize
from amptorch.data.io import read_structures
from amptorch.descriptors.base import Descriptor
from amptorch.descriptors.record import FeatureRecord
from amptorch.errors import InputError, where

FORMAT = "amptorch-lmdb"
VERSION = 1
MAGIC = b"AMPTREC1"
METADATA_KEY = b"__metadata__"
DEFAULT_MAP_SIZE = 1 << 40  # 1 TiB of address space; the file grows only as needed
_ALLOWED_DTYPES = {"<f8", "<f4", "<i8", "<i4", "|b1", "|u1"}
_FLAGS = ("derivatives", "strain", "dtype")


def record_key(index: int) -> bytes:
    """The LMDB key of structure ``index``."""
    return b"%012d" % index


# --------------------------------------------------------------------- records


def encode_record(record: FeatureRecord) -> bytes:
    """Bytes of one record: magic, header length, JSON header, aligned raw buffers (no pickle)."""
    entries, buffers, offset = [], [], 0
    for name, arr in record.to_arrays().items():
        a = np.asarray(arr)
        a = np.asarray(
            a, dtype=a.dtype.newbyteorder("<"), order="C"
        )  # keeps 0-d (ascontiguousarray would not)
        dt = a.dtype.str
        if dt not in _ALLOWED_DTYPES:
            raise InputError(f"record.{name}: dtype {a.dtype}; expected float32/64, int32/64 or bool")
        raw = a.tobytes()
        entries.append([name, dt, list(a.shape), offset, len(raw)])
        pad = (-len(raw)) % 8
        buffers.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    header = json.dumps({"fields": entries}, separators=(",", ":")).encode()
    header += b" " * ((-len(header)) % 8)
    return MAGIC + struct.pack("<Q", len(header)) + header + b"".join(buffers)


def decode_record(data: bytes | bytearray | memoryview, key: str = "") -> FeatureRecord:
    """Inverse of :func:`encode_record`; arrays are writable copies."""
    buf = bytearray(data)
    if bytes(buf[:8]) != MAGIC or len(buf) < 16:
        raise InputError(f"lmdb record {key}: not an amptorch record; expected the {MAGIC.decode()} format")
    (hlen,) = struct.unpack("<Q", bytes(buf[8:16]))
    start = 16 + hlen
    if start > len(buf):
        raise InputError(f"lmdb record {key}: truncated header; expected {hlen} bytes")
    try:
        header = json.loads(bytes(buf[16:start]).decode())
        entries = header["fields"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"lmdb record {key}: unreadable header; expected JSON with 'fields'") from None
    arrays = {}
    for name, dt, shape, off, nbytes in entries:
        if dt not in _ALLOWED_DTYPES:
            raise InputError(f"lmdb record {key}: field {name} has dtype {dt!r}; expected a numeric dtype")
        count = int(np.prod(shape, dtype=np.int64))
        if count * np.dtype(dt).itemsize != nbytes or start + off + nbytes > len(buf):
            raise InputError(f"lmdb record {key}: field {name} truncated; expected {nbytes} bytes")
        a = np.frombuffer(buf, dtype=np.dtype(dt), count=count, offset=start + off).reshape(tuple(shape))
        arrays[name] = a.astype(a.dtype.newbyteorder("="), copy=False)
    return FeatureRecord.from_arrays(arrays)


# -------------------------------------------------------------------- metadata


def _open_read(path: str) -> lmdb.Environment:
    if not os.path.isfile(path):
        raise InputError(f"lmdb_path: no such file {path!r}; expected a database written by write_lmdb")
    try:
        return lmdb.open(
            path, subdir=False, readonly=True, lock=False, readahead=False, meminit=False, max_readers=256
        )
    except lmdb.Error as err:
        raise InputError(f"lmdb_path: cannot open {path!r} ({err}); expected an LMDB file") from None


# One read-only environment per file per process: py-lmdb refuses to open a
# file twice in a process (a forked DataLoader worker included, so a worker
# reuses the one it inherits: read-only and lock-free, that is safe).
_READERS: dict[str, lmdb.Environment] = {}
_READERS_LOCK = threading.Lock()


def _reader(path: str) -> lmdb.Environment:
    """The process's shared read-only environment of ``path``, opened on first use."""
    key = os.path.realpath(path)
    with _READERS_LOCK:
        env = _READERS.get(key)
        if env is None:
            env = _READERS[key] = _open_read(path)
        return env


def _drop_reader(path: str) -> None:
    """Close this process's reader of ``path`` (before writing to it; reopened on the next read)."""
    with _READERS_LOCK:
        env = _READERS.pop(os.path.realpath(path), None)
    if env is not None:
        env.close()


def _get_metadata(txn, path: str) -> dict | None:
    raw = txn.get(METADATA_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(bytes(raw).decode())
    except ValueError:
        raise InputError(f"lmdb {path!r}: unreadable metadata; expected JSON") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"lmdb {path!r}: format {meta.get('format')!r}; expected {FORMAT!r}")
    if meta.get("version", 0) > VERSION:
        raise InputError(
            f"lmdb {path!r}: format version {meta.get('version')}; expected <= {VERSION} (upgrade amptorch)"
        )
    return meta


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict of a database written by :func:`write_lmdb`."""
    path = os.fspath(path)
    with _reader(path).begin() as txn:
        meta = _get_metadata(txn, path)
    if meta is None:
        raise InputError(f"lmdb {path!r}: no metadata entry; expected a database written by write_lmdb")
    return meta


def update_metadata(path: str | os.PathLike, **entries) -> dict:
    """Add JSON-able entries (e.g. ``feature_scaler=scaler.to_dict()``) to a database's metadata."""
    path = os.fspath(path)
    reserved = {"format", "version", "descriptor", "descriptor_hash", "count", "total", *_FLAGS}
    bad = sorted(set(entries) & reserved)
    if bad:
        raise InputError(f"metadata: {bad[0]!r} is written by write_lmdb; expected another key")
    if not os.path.isfile(path):
        raise InputError(f"lmdb_path: no such file {path!r}; expected a database written by write_lmdb")
    _drop_reader(path)
    env = lmdb.open(path, subdir=False, map_size=DEFAULT_MAP_SIZE, meminit=False)
    try:
        with env.begin(write=True) as txn:
            meta = _get_metadata(txn, path)
            if meta is None:
                raise InputError(
                    f"lmdb {path!r}: no metadata entry; expected a database written by write_lmdb"
                )
            meta.update(entries)
            txn.put(METADATA_KEY, json.dumps(meta).encode())
    finally:
        env.close()
    return meta


# ---------------------------------------------------------------------- writing


def _elements(items) -> list[int]:
    nums = [np.asarray(x.numbers, dtype=np.int64) for x in items]
    return [int(z) for z in np.unique(np.concatenate(nums))] if nums else []


def _check_compatible(old: dict, new: dict, path: str) -> None:
    """Refuse to resume into a database made with other settings."""
    oh, nh = old.get("descriptor_hash"), new.get("descriptor_hash")
    if oh is not None and nh is not None and oh != nh:
        raise InputError(
            f"lmdb {path!r}: made with descriptor hash {oh[:16]}, this call uses {nh[:16]}; "
            "expected the same descriptor settings (or write to another path)"
        )
    for key in (*_FLAGS, "n_features", "total"):
        if old.get(key) is not None and new.get(key) is not None and old.get(key) != new.get(key):
            raise InputError(
                f"lmdb {path!r}: {key} is {old.get(key)!r} in the database, {new.get(key)!r} in this call; "
                "expected the same (or write to another path)"
            )


def write_lmdb(
    path: str | os.PathLike,
    images_or_records,
    descriptor: Descriptor | None = None,
    batch_size: int = 256,
    workers: int | None = None,
    progress: bool = True,
    map_size: int = DEFAULT_MAP_SIZE,
    derivatives: bool = True,
    strain: bool = False,
    dtype=np.float64,
    with_labels: bool = True,
    forces: bool = True,
    stress: bool = False,
    metadata: dict | None = None,
) -> dict:
    """Featurize structures (or take records) and store them in an LMDB file.

    Args:
        path: the database file (created; ``path + "-lock"`` beside it).
        images_or_records: ase.Atoms (a list, a file path or glob, see
            :func:`read_structures`) or a sequence of FeatureRecords (a
            list, an AtomsDataset).
        descriptor: required for structures; for records, its settings are
            recorded in the metadata when given.
        batch_size: structures featurized and committed per transaction.
        workers: featurizing threads (None: all CPUs).
        progress: show a tqdm bar.
        map_size: LMDB address space in bytes (the file grows only as needed).
        derivatives, strain, dtype, with_labels, forces, stress: as in
            :func:`amptorch.data.featurize.featurize`.
        metadata: extra JSON-able entries for the metadata (e.g. scalers).

    Returns:
        The metadata written: ``format``, ``version``, ``descriptor``
        (settings or None), ``descriptor_hash``, ``count`` (records
        written), ``total``, ``elements`` (atomic numbers), ``n_features``,
        ``derivatives``, ``strain``, ``dtype`` and the extra entries.

    Resuming: a second call with the same data and settings writes only the
    keys that are missing (e.g. after a kill); a database made with another
    descriptor hash, other flags or another number of structures is refused.
    """
    path = os.fspath(path)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size: got {batch_size!r}; expected a positive integer")
    items = images_or_records
    is_records = (
        not isinstance(items, (str, os.PathLike, Atoms))
        and hasattr(items, "__len__")
        and hasattr(items, "__getitem__")
        and len(items) > 0
        and isinstance(items[0], FeatureRecord)
    )
    if is_records:
        items = list(items)  # a list, an AtomsDataset, ...
        for k, r in enumerate(items):
            if not isinstance(r, FeatureRecord):
                raise InputError(f"{where(k)}record: got {type(r).__name__}; expected a FeatureRecord")
        n_features = items[0].n_features
        for k, r in enumerate(items):
            if r.n_features != n_features:
                raise InputError(f"{where(k)}features: {r.n_features} per atom; expected {n_features}")
        if descriptor is not None and descriptor.length != n_features:
            raise InputError(f"descriptor: gives {descriptor.length} features; the records hold {n_features}")
        flags = {
            "derivatives": all(r.dfeat is not None for r in items),
            "strain": all(r.dfeat_strain is not None for r in items),
            "dtype": np.dtype(items[0].features.dtype).name,
        }
    else:
        items = read_structures(items)
        if descriptor is None:
            raise InputError("descriptor: required to featurize structures; expected a GMP or GaussianSF")
        if not isinstance(descriptor, Descriptor):
            raise InputError(f"descriptor: got {type(descriptor).__name__}; expected a GMP or GaussianSF")
        n_features = descriptor.length
        flags = {"derivatives": bool(derivatives), "strain": bool(strain), "dtype": np.dtype(dtype).name}
    total = len(items)
    new_meta = {
        "format": FORMAT,
        "version": VERSION,
        "descriptor": descriptor.settings() if descriptor is not None else None,
        "descriptor_hash": descriptor.hash if descriptor is not None else None,
        "count": 0,
        "total": total,
        "elements": _elements(items),
        "n_features": int(n_features),
        **flags,
    }
    if metadata:
        new_meta.update({k: v for k, v in metadata.items() if k not in new_meta})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _drop_reader(path)
    env = lmdb.open(path, subdir=False, map_size=int(map_size), meminit=False, map_async=False)
    bar = None
    try:
        with env.begin(write=True) as txn:
            old = _get_metadata(txn, path)
            if old is not None:
                _check_compatible(old, new_meta, path)
                keep = {k: v for k, v in old.items() if k not in new_meta}
                new_meta.update(keep)
            count = sum(1 for k in range(total) if txn.get(record_key(k)) is not None) if old else 0
            new_meta["count"] = count
            txn.put(METADATA_KEY, json.dumps(new_meta).encode())
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=count, desc="writing lmdb", unit="struct")
        for start in range(0, total, int(batch_size)):
            stop = min(total, start + int(batch_size))
            with env.begin() as txn:
                missing = [k for k in range(start, stop) if txn.get(record_key(k)) is None]
            if not missing:
                continue
            if is_records:
                recs = [items[k] for k in missing]
            else:
                recs = featurize(
                    [items[k] for k in missing],
                    descriptor,
                    derivatives=derivatives,
                    strain=strain,
                    dtype=dtype,
                    workers=workers,
                    progress=False,
                    with_labels=with_labels,
                    forces=forces,
                    stress=stress,
                    indices=missing,
                )
            blobs = [encode_record(r) for r in recs]
            with env.begin(write=True) as txn:
                for k, blob in zip(missing, blobs, strict=True):
                    txn.put(record_key(k), blob)
                count += len(missing)
                new_meta["count"] = count
                txn.put(METADATA_KEY, json.dumps(new_meta).encode())
            if bar is not None:
                bar.update(len(missing))
        env.sync(True)
    except lmdb.MapFullError:
        raise InputError(
            f"map_size: {map_size} bytes is too small for {path!r}; expected a larger map_size"
        ) from None
    finally:
        if bar is not None:
            bar.close()
        env.close()
    return new_meta


# ---------------------------------------------------------------------- reading


class LmdbDataset(Dataset):
    """Records of one or more LMDB files as a torch-style Dataset (``len``, ``[k]`` -> FeatureRecord).

    Files are opened lazily, read-only and without locks, once per process
    (shared by every dataset of that process), so the dataset works in
    DataLoader workers (fork or spawn).

    Args:
        path_or_paths: one database file or a list (concatenated in order);
            they must share descriptor hash, flags and feature length.
        cache: "no" (read every access), "partial" (keep the last
            ``cache_size`` decoded records per process), "full" (load all
            records into memory now).
        cache_size: records kept by the "partial" cache.
        allow_incomplete: read a database whose writing was interrupted
            (only the records written; by default that is an error).

    Attributes:
        metadata: the first file's metadata dict; ``metadatas`` all of them.
    """

    def __init__(
        self,
        path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
        cache: str = "no",
        cache_size: int = 4096,
        allow_incomplete: bool = False,
    ):
        if isinstance(path_or_paths, (str, os.PathLike)):
            paths = [os.fspath(path_or_paths)]
        else:
            paths = [os.fspath(p) for p in path_or_paths]
        if not paths:
            raise InputError("lmdb_path: empty list; expected at least one database file")
        if cache not in ("no", "partial", "full"):
            raise InputError(f"cache: got {cache!r}; expected 'no', 'partial' or 'full'")
        self.paths = paths
        self.cache = cache
        self.cache_size = int(cache_size)
        self.metadatas = [read_metadata(p) for p in paths]
        first = self.metadatas[0]
        for p, m in zip(paths[1:], self.metadatas[1:], strict=True):
            if m.get("descriptor_hash") != first.get("descriptor_hash"):
                raise InputError(
                    f"lmdb_path: {p!r} has descriptor hash {str(m.get('descriptor_hash'))[:16]}, "
                    f"{paths[0]!r} has {str(first.get('descriptor_hash'))[:16]}; expected the same descriptor"
                )
            for key in (*_FLAGS, "n_features"):
                if m.get(key) != first.get(key):
                    raise InputError(
                        f"lmdb_path: {p!r} has {key}={m.get(key)!r}, {paths[0]!r} has {first.get(key)!r}; "
                        "expected the same"
                    )
        lengths = []
        for p, m in zip(paths, self.metadatas, strict=True):
            if m["count"] < m["total"] and not allow_incomplete:
                raise InputError(
                    f"lmdb {p!r}: incomplete ({m['count']} of {m['total']} structures written); "
                    "expected a finished database (run write_lmdb again to resume)"
                )
            lengths.append(int(m["count"]))
        self._ends = np.cumsum(lengths).tolist()
        self._lru: OrderedDict = OrderedDict()
        self._records: list[FeatureRecord] | None = None
        if cache == "full":
            self._records = [self._read(k) for k in range(len(self))]
            self.close()

    @property
    def metadata(self) -> dict:
        return self.metadatas[0]

    @property
    def n_features(self) -> int:
        return int(self.metadata["n_features"])

    @property
    def elements(self) -> list[int]:
        """Sorted atomic numbers present in all files."""
        return sorted({int(z) for m in self.metadatas for z in m.get("elements", [])})

    def descriptor(self) -> Descriptor:
        """The descriptor the data were made with (rebuilt from the stored settings)."""
        from amptorch.descriptors import from_settings

        if self.metadata.get("descriptor") is None:
            raise InputError(f"lmdb {self.paths[0]!r}: no descriptor settings stored")
        return from_settings(self.metadata["descriptor"])

    def __len__(self) -> int:
        return int(self._ends[-1]) if self._ends else 0

    def _read(self, index: int) -> FeatureRecord:
        db = bisect.bisect_right(self._ends, index)
        local = index - (self._ends[db - 1] if db else 0)
        with _reader(self.paths[db]).begin() as txn:
            raw = txn.get(record_key(local))
        if raw is None:
            raise InputError(f"lmdb {self.paths[db]!r}: record {local} missing; expected keys 0..count-1")
        return decode_record(raw, key=f"{self.paths[db]}:{local}")

    def __getitem__(self, index: int) -> FeatureRecord:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} records")
        if self._records is not None:
            return self._records[index]
        if self.cache == "partial":
            rec = self._lru.get(index)
            if rec is not None:
                self._lru.move_to_end(index)
                return rec
            rec = self._read(index)
            self._lru[index] = rec
            if len(self._lru) > self.cache_size:
                self._lru.popitem(last=False)
            return rec
        return self._read(index)

    def close(self) -> None:
        """Close this process's readers of the files (they reopen on the next access)."""
        for p in self.paths:
            _drop_reader(p)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_lru"] = OrderedDict()  # workers start with an empty cache
        return state


def get_lmdb_dataset(
    lmdb_paths: str | os.PathLike | Sequence[str | os.PathLike], cache_type: str = "no"
) -> LmdbDataset:
    """The original's loader: ``cache_type`` "no" | "partial" | "full" (see :class:`LmdbDataset`)."""
    return LmdbDataset(lmdb_paths, cache=cache_type)


__all__ = [
    "write_lmdb",
    "LmdbDataset",
    "get_lmdb_dataset",
    "read_metadata",
    "update_metadata",
    "encode_record",
    "decode_record",
    "record_key",
]
