"""LMDB storage of FeatureRecords, for data sets larger than memory.

One database file (``subdir=False``, as the original) holds one record per
structure under the key ``"%012d" % index`` and a JSON metadata entry under
``__metadata__`` (descriptor settings and hash, counts, elements, format
version, and anything added with :func:`update_metadata`, e.g. scalers).

Records are stored without pickle, so opening a database cannot execute
code: ``MAGIC`` (8 bytes), the header length (uint64 little-endian), a JSON
header ``{"fields": [[name, dtype, shape, offset, nbytes], ...]}`` and the raw
little-endian array buffers, each 8-byte aligned.

Each record header also holds ``crc32``: the checksum of its field table
and array bytes, verified on every read (a damaged record is an
:class:`InputError` naming the record and the file). Stores of format
version 1 (before checksums) still read, unverified.

A record is a FeatureRecord or, in a geometry store (metadata ``kind:
"geometry"``, issue 11), a :class:`~amptorch.data.geometry.GeometryRecord`:
numbers (uint8), positions, cell, pbc and labels, no neighbour lists; its
header says ``"kind": "geometry"``. One encoder and decoder handle both.
A folder written by :func:`amptorch.data.shards.build_store` (``store.json``
and LMDB shards) opens through :func:`get_lmdb_dataset` the same way.

Writing commits every ``batch_size`` structures; calling :func:`write_lmdb`
again after a kill skips the keys already written. It continues only onto
the same inputs: the metadata holds ``inputs_sha256``, a hash of every input
structure (numbers, positions, cell, pbc and the labels stored) or record, in
order, and a store made from other inputs or settings is refused
(``overwrite=True`` / ``amptorch featurize --overwrite`` starts it again).
One writer at a time: :func:`write_lmdb` and :func:`update_metadata` hold an
exclusive ``flock`` on ``path + "-lock"`` (released by the OS if the process
dies; removed when writing ends). Every file is checked against its LMDB meta
pages (magic, page size, last page) before it is mapped, so a truncated or
foreign file is an :class:`InputError`, never a SIGBUS.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import json
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import lmdb
import numpy as np
from ase import Atoms
from torch.utils.data import Dataset

try:
    import fcntl
except ImportError:  # not POSIX: no writer lock
    fcntl = None  # type: ignore[assignment]

from amptorch.data.featurize import featurize
from amptorch.data.geometry import GeometryRecord, geometry_record
from amptorch.data.io import labels, read_structures
from amptorch.descriptors.base import Descriptor, structure_arrays
from amptorch.descriptors.record import FeatureRecord
from amptorch.errors import InputError, where

FORMAT = "amptorch-lmdb"
VERSION = 2  # 2: per-record crc32 and the inputs fingerprint; 1 still reads (records unverified)
MAGIC = b"AMPTREC1"
METADATA_KEY = b"__metadata__"
DEFAULT_MAP_SIZE = 1 << 40  # 1 TiB of address space; the file grows only as needed
_ALLOWED_DTYPES = {"<f8", "<f4", "<i8", "<i4", "|b1", "|u1"}
_FLAGS = ("derivatives", "strain", "dtype")
KINDS = ("features", "geometry")  # metadata "kind" (absent in stores before geometry records: "features")
_GEOMETRY_FIELDS = ("numbers", "positions", "cell", "pbc", "energy", "forces", "stress")


def record_key(index: int) -> bytes:
    """The LMDB key of structure ``index``."""
    return b"%012d" % index


# --------------------------------------------------------------------- records


def _record_arrays(record: FeatureRecord | GeometryRecord) -> tuple[str, dict[str, np.ndarray]]:
    """(kind, arrays) of a record; a geometry record keeps no neighbour list and stores numbers as uint8."""
    if isinstance(record, FeatureRecord):
        return "features", record.to_arrays()
    if not isinstance(record, GeometryRecord):
        raise InputError(f"record: got {type(record).__name__}; expected a FeatureRecord or a GeometryRecord")
    numbers = np.asarray(record.numbers)
    if numbers.size and not (numbers.min() >= 1 and numbers.max() <= 118):
        raise InputError(f"record.numbers: {numbers.min()}..{numbers.max()}; expected atomic numbers 1..118")
    arrays = {name: getattr(record, name) for name in _GEOMETRY_FIELDS if getattr(record, name) is not None}
    arrays["numbers"] = numbers.astype(np.uint8)
    arrays["pbc"] = np.asarray(record.pbc, dtype=bool)
    return "geometry", arrays


def encode_record(record: FeatureRecord | GeometryRecord) -> bytes:
    """Bytes of one record: magic, header length, JSON header, aligned raw buffers (no pickle).

    A GeometryRecord's header holds ``"kind": "geometry"`` (a FeatureRecord's has no kind, as before).
    """
    kind, arrays = _record_arrays(record)
    entries, buffers, offset = [], [], 0
    for name, arr in arrays.items():
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
    payload = b"".join(buffers)
    head = {"fields": entries, "crc32": _checksum(entries, payload)}
    if kind == "geometry":
        head["kind"] = kind
    header = json.dumps(head, separators=(",", ":")).encode()
    header += b" " * ((-len(header)) % 8)
    return MAGIC + struct.pack("<Q", len(header)) + header + payload


def _checksum(entries: list, payload: bytes | memoryview) -> int:
    """crc32 of a record's field table (canonical JSON) and its array bytes."""
    table = json.dumps(entries, separators=(",", ":")).encode()
    return zlib.crc32(payload, zlib.crc32(table))


def decode_record(
    data: bytes | bytearray | memoryview, key: str = "", checksum: bool | None = None
) -> FeatureRecord | GeometryRecord:
    """Inverse of :func:`encode_record`; arrays are writable copies (a GeometryRecord for ``kind: geometry``).

    ``checksum``: None verifies the header's ``crc32`` when there is one (records of
    format version 1 have none), True requires it, False skips it.
    """
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
    stored = header.get("crc32") if isinstance(header, dict) else None
    if checksum is not False:
        if stored is None and checksum:
            raise InputError(f"lmdb record {key}: no checksum in its header; expected a crc32 (format version 2)")
        if stored is not None:
            try:
                actual = _checksum(entries, memoryview(buf)[start:])
            except (TypeError, ValueError):
                actual = None
            if actual != stored:
                raise InputError(
                    f"lmdb record {key}: damaged (crc32 {actual} computed, {stored} stored); expected an intact "
                    "record (write the store again: amptorch featurize --overwrite)"
                )
    if not isinstance(entries, list):
        raise InputError(f"lmdb record {key}: unreadable header; expected a list of fields")
    arrays = {}
    for name, dt, shape, off, nbytes in entries:
        if dt not in _ALLOWED_DTYPES:
            raise InputError(f"lmdb record {key}: field {name} has dtype {dt!r}; expected a numeric dtype")
        count = int(np.prod(shape, dtype=np.int64))
        if count * np.dtype(dt).itemsize != nbytes or start + off + nbytes > len(buf):
            raise InputError(f"lmdb record {key}: field {name} truncated; expected {nbytes} bytes")
        a = np.frombuffer(buf, dtype=np.dtype(dt), count=count, offset=start + off).reshape(tuple(shape))
        arrays[name] = a.astype(a.dtype.newbyteorder("="), copy=False)
    kind = header.get("kind", "features")
    if kind == "geometry":
        return _geometry_from_arrays(arrays, key)
    if kind != "features":
        raise InputError(f"lmdb record {key}: kind {kind!r}; expected one of {list(KINDS)} (upgrade amptorch?)")
    return FeatureRecord.from_arrays(arrays)


def _geometry_from_arrays(arrays: dict[str, np.ndarray], key: str) -> GeometryRecord:
    missing = [n for n in ("numbers", "positions", "cell", "pbc") if n not in arrays]
    if missing:
        raise InputError(f"lmdb record {key}: geometry without {missing[0]!r}; expected numbers, positions, cell, pbc")
    n = arrays["numbers"].shape[0]
    energy = arrays.get("energy")
    record = GeometryRecord(
        numbers=arrays["numbers"].astype(np.int64), positions=arrays["positions"].astype(np.float64, copy=False),
        cell=arrays["cell"].astype(np.float64, copy=False), pbc=arrays["pbc"].astype(bool, copy=False),
        energy=None if energy is None else float(energy), forces=arrays.get("forces"), stress=arrays.get("stress"),
    )  # fmt: skip
    shapes = {"positions": (n, 3), "cell": (3, 3), "pbc": (3,), "forces": (n, 3), "stress": (6,)}
    for name, shape in shapes.items():
        arr = getattr(record, name)
        if arr is not None and arr.shape != shape:
            raise InputError(f"lmdb record {key}: {name} has shape {arr.shape}; expected {shape}")
    return record


# -------------------------------------------------------------------- metadata


_LMDB_MAGIC = 0xBEEFC0DE  # mm_magic of an LMDB meta page (pages 0 and 1)
_META_OFFSET = 16  # after the page header: pgno (8), pad, flags, lower, upper (2 each)


_META_SIZE = _META_OFFSET + 24 + 96 + 16  # magic, version, address, map size; 2 databases; last page, txn id


def _meta_page(head: bytes) -> tuple[int, int, int] | None:
    """(page size, last page, txn id) of an LMDB meta page, or None if it is not one."""
    if len(head) < _META_SIZE:
        return None
    magic, version = struct.unpack_from("<II", head, _META_OFFSET)
    (psize,) = struct.unpack_from("<I", head, _META_OFFSET + 24)  # the free-list database's md_pad: the page size
    last, txnid = struct.unpack_from("<QQ", head, _META_OFFSET + 24 + 96)
    if magic != _LMDB_MAGIC or version != 1 or not 512 <= psize <= 65536 or psize & (psize - 1):
        return None
    return psize, last, txnid


def check_lmdb_file(path: str | os.PathLike) -> None:
    """InputError unless ``path`` is a whole LMDB file; read with ``struct`` before anything maps it.

    The two meta pages (pages 0 and 1) give the magic, the page size and the
    last page of the newest transaction; a file shorter than ``(last + 1) *
    page size`` is truncated (mapping it would end in SIGBUS on access).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"lmdb {path!r}: is a folder; expected an LMDB file (a file name such as fps.lmdb)")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            metas = [m for m in [_meta_page(fh.read(_META_SIZE))] if m is not None]
            if metas:
                fh.seek(metas[0][0])
                second = _meta_page(fh.read(_META_SIZE))
                if second is not None and second[0] == metas[0][0]:
                    metas.append(second)
    except OSError as err:
        raise InputError(f"lmdb {path!r}: cannot read ({err.strerror or err}); expected a readable LMDB file") from None
    if not metas:
        what = "an empty file" if size == 0 else f"not an LMDB file ({size} bytes, no LMDB meta page)"
        raise InputError(f"lmdb {path!r}: {what}; expected a database written by write_lmdb")
    psize, last, _ = max(metas, key=lambda m: m[2])
    need = max(2, last + 1) * psize
    if size < need:
        raise InputError(
            f"lmdb {path!r}: truncated ({size} bytes; its LMDB header says {need}); expected the whole file "
            "(copy it again, or write it again)"
        )


def _open_read(path: str) -> lmdb.Environment:
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise InputError(f"lmdb_path: {path!r} is a folder; expected an LMDB file written by write_lmdb")
        raise InputError(f"lmdb_path: no such file {path!r}; expected a database written by write_lmdb")
    check_lmdb_file(path)
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


def _is_open(path: str | os.PathLike) -> bool:
    """Whether this process holds a shared reader of ``path``."""
    with _READERS_LOCK:
        return os.path.realpath(path) in _READERS


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


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path + "-lock"`` (one writer per store); the file is removed on exit.

    A second writer gets an :class:`InputError` at once. The OS releases the
    lock of a killed process, so a stale file never blocks; the lock file is
    checked to be the one on disk after locking (a writer that removed it as
    we opened it is not trusted).
    """
    path = os.fspath(path)
    lock_path = path + "-lock"
    if fcntl is None:  # no flock on this platform: no lock
        yield
        return
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise InputError(f"lmdb {path!r}: cannot create the lock file {lock_path!r} ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError(
                    f"lmdb {path!r}: another process is writing it (it holds {lock_path!r}); expected one writer "
                    "at a time (wait for it to finish, or write to another path)"
                ) from None
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def _open_write(path: str, map_size: int) -> lmdb.Environment:
    """A writing environment (the caller holds :func:`writer_lock`; readers are lock-free)."""
    return lmdb.open(path, subdir=False, map_size=int(map_size), meminit=False, map_async=False, lock=False)


def update_metadata(path: str | os.PathLike, **entries) -> dict:
    """Add JSON-able entries (e.g. ``feature_scaler=scaler.to_dict()``) to a database's metadata."""
    path = os.fspath(path)
    reserved = {"format", "version", "descriptor", "descriptor_hash", "count", "total", "inputs_sha256", "kind",
                "atoms", *_FLAGS}
    bad = sorted(set(entries) & reserved)
    if bad:
        raise InputError(f"metadata: {bad[0]!r} is written by write_lmdb; expected another key")
    if not os.path.isfile(path):
        raise InputError(f"lmdb_path: no such file {path!r}; expected a database written by write_lmdb")
    check_lmdb_file(path)
    _drop_reader(path)
    with writer_lock(path):
        env = _open_write(path, DEFAULT_MAP_SIZE)
        try:
            with env.begin(write=True) as txn:
                meta = _get_metadata(txn, path)
                if meta is None:
                    raise InputError(
                        f"lmdb {path!r}: no metadata entry; expected a database written by write_lmdb"
                    )
                meta.update(entries)
                txn.put(METADATA_KEY, json.dumps(meta).encode())
            env.sync(True)
        except lmdb.Error as err:
            raise InputError(f"lmdb {path!r}: cannot write the metadata ({err}); expected free disk space") from None
        finally:
            env.close()
    return meta


# ---------------------------------------------------------------------- writing


def _elements(items) -> list[int]:
    nums = [np.asarray(x.numbers, dtype=np.int64) for x in items]
    return [int(z) for z in np.unique(np.concatenate(nums))] if nums else []


def _check_inputs(old: dict, new: dict, count: int, path: str) -> None:
    """Resume only onto the inputs a store was made from (its ``inputs_sha256``)."""
    if count == 0:
        return
    was = old.get("inputs_sha256")
    if was is None:
        raise InputError(
            f"lmdb {path!r}: holds {count} records written before input fingerprints (format version "
            f"{old.get('version')}), so they cannot be checked against these inputs; expected overwrite=True "
            "(amptorch featurize --overwrite) or another path"
        )
    if was != new["inputs_sha256"]:
        raise InputError(
            f"lmdb {path!r}: holds {count} of {old.get('total')} records made from other inputs (fingerprint "
            f"{was[:12]}; these inputs: {new['inputs_sha256'][:12]}); expected the same structures and labels to "
            "resume, or overwrite=True (amptorch featurize --overwrite), or another path"
        )


def _check_compatible(old: dict, new: dict, path: str) -> None:
    """Refuse to resume into a database made with other settings."""
    oh, nh = old.get("descriptor_hash"), new.get("descriptor_hash")
    if oh is not None and nh is not None and oh != nh:
        raise InputError(
            f"lmdb {path!r}: made with descriptor hash {oh[:16]}, this call uses {nh[:16]}; "
            "expected the same descriptor settings (or overwrite=True / amptorch featurize --overwrite, or another "
            "path)"
        )
    if old.get("kind", "features") != new.get("kind", "features"):
        raise InputError(
            f"lmdb {path!r}: a {old.get('kind', 'features')} store, this call writes {new.get('kind')} records; "
            "expected the same kind (or overwrite=True / amptorch featurize --overwrite, or another path)"
        )
    for key in (*_FLAGS, "n_features", "total", "with_labels", "forces", "stress"):
        if old.get(key) is not None and new.get(key) is not None and old.get(key) != new.get(key):
            raise InputError(
                f"lmdb {path!r}: {key} is {old.get(key)!r} in the database, {new.get(key)!r} in this call; "
                "expected the same (or overwrite=True / amptorch featurize --overwrite, or another path)"
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
    overwrite: bool = False,
    kind: str = "features",
    first_index: int = 0,
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
        overwrite: replace an existing amptorch store at ``path`` instead of
            resuming it (never a file that is not one).
        kind: "features" (FeatureRecords) or "geometry" (GeometryRecords of
            the structures: geometry and labels, no descriptor, no neighbour
            lists; for recompute-mode training).
        first_index: the number of the first structure in error messages
            (a shard of a larger set names its structures globally).

    Returns:
        The metadata written: ``format``, ``version``, ``descriptor``
        (settings or None), ``descriptor_hash``, ``count`` (records
        written), ``total``, ``elements`` (atomic numbers), ``atoms`` (in all), ``n_features``,
        ``derivatives``, ``strain``, ``dtype``, ``kind`` and the extra entries.

    Resuming: a second call with the same data and settings writes only the
    keys that are missing (e.g. after a kill); a database made from other
    inputs (``inputs_sha256``), with another descriptor hash, other flags or
    another number of structures is refused. A second concurrent writer, a
    folder, a foreign, truncated or pickled (original AmpTorch) file are
    refused; a failed write (full disk) keeps the batches committed before
    and leaves no empty file it created.
    """
    path = os.fspath(path)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size: got {batch_size!r}; expected a positive integer")
    if kind not in KINDS:
        raise InputError(f"kind: got {kind!r}; expected one of {list(KINDS)}")
    first_index = int(first_index)
    _check_target(path)  # a folder, a foreign or truncated file: refused before any work
    items = images_or_records
    record_type = GeometryRecord if kind == "geometry" else FeatureRecord
    is_records = (
        not isinstance(items, (str, os.PathLike, Atoms))
        and hasattr(items, "__len__")
        and hasattr(items, "__getitem__")
        and len(items) > 0
        and isinstance(items[0], (FeatureRecord, GeometryRecord))
    )
    if is_records and not isinstance(items[0], record_type):
        raise InputError(f"records: {type(items[0]).__name__}s; expected {record_type.__name__}s for kind={kind!r}")
    if kind == "geometry":
        if descriptor is not None:
            raise InputError("descriptor: a geometry store holds no fingerprints; expected descriptor=None")
        items = list(items) if is_records else read_structures(items)
        for k, r in enumerate(items if is_records else ()):
            if not isinstance(r, GeometryRecord):
                raise InputError(f"{where(first_index + k)}record: got {type(r).__name__}; expected a GeometryRecord")
        n_features = 0
        flags = {"derivatives": False, "strain": False, "dtype": "float64"}
    elif is_records:
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
    if is_records:
        fingerprint = inputs_fingerprint(records=items)
    else:
        fingerprint = inputs_fingerprint(items, with_labels=with_labels, forces=forces, stress=stress,
                                         first_index=first_index)  # fmt: skip
    new_meta = {
        "format": FORMAT,
        "version": VERSION,
        "descriptor": descriptor.settings() if descriptor is not None else None,
        "descriptor_hash": descriptor.hash if descriptor is not None else None,
        "count": 0,
        "total": total,
        "elements": _elements(items),
        "atoms": int(sum(len(x.numbers) for x in items)),
        "n_features": int(n_features),
        "inputs_sha256": fingerprint,
        "kind": kind,
        **flags,
    }
    if kind == "geometry":
        new_meta.update(with_labels=bool(with_labels), forces=bool(forces), stress=bool(stress))
    if metadata:
        new_meta.update({k: v for k, v in metadata.items() if k not in new_meta})
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as err:
        raise InputError(
            f"lmdb {path!r}: cannot create its folder ({err.strerror}); expected a writable path"
        ) from None
    _drop_reader(path)
    with writer_lock(path):
        exists = _check_target(path)
        if exists and overwrite:
            _check_overwritable(path, map_size)
            os.unlink(path)
            exists = False
        return _write(path, _maker(items, is_records, kind, descriptor, workers, first_index, dict(
            derivatives=derivatives, strain=strain, dtype=dtype, with_labels=with_labels, forces=forces,
            stress=stress)), new_meta, exists, int(batch_size), progress, int(map_size))  # fmt: skip


def _maker(items, is_records, kind, descriptor, workers, first_index, options):
    """``make(keys) -> records`` for the keys (positions in ``items``) still to write."""
    if is_records:
        return lambda keys: [items[k] for k in keys]
    if kind == "geometry":
        labelled = {k: options[k] for k in ("with_labels", "forces", "stress")}
        return lambda keys: [geometry_record(items[k], first_index + k, **labelled) for k in keys]
    return lambda keys: featurize([items[k] for k in keys], descriptor, progress=False, workers=workers,
                                  indices=[first_index + k for k in keys], **options)  # fmt: skip


def _check_target(path: str) -> bool:
    """Whether ``path`` holds a store to continue (an empty file is a new one); InputError for a folder or a
    foreign or truncated file (checked before the lock file is made and before anything maps it)."""
    if os.path.isdir(path):
        raise InputError(f"lmdb {path!r}: is a folder; expected an LMDB file name (such as fps.lmdb)")
    exists = os.path.isfile(path) and os.path.getsize(path) > 0
    if exists:
        check_lmdb_file(path)
    return exists


def inputs_fingerprint(
    images: Sequence[Atoms] | None = None,
    records: Sequence[FeatureRecord] | None = None,
    with_labels: bool = True,
    forces: bool = True,
    stress: bool = False,
    first_index: int = 0,
) -> str:
    """sha256 (hex) of the inputs of :func:`write_lmdb`, in order: what a store was made from.

    Structures: atomic numbers, positions, cell, pbc and the labels that are
    stored (energy; forces, stress when requested); the labels are checked
    here, so a bad label stops the call before anything is written. Records:
    their encoded bytes.
    """
    h = hashlib.sha256()
    if records is not None:
        h.update(b"records")
        for r in records:
            blob = encode_record(r)
            h.update(struct.pack("<Q", len(blob)) + blob)
        return h.hexdigest()
    h.update(f"structures|labels={int(bool(with_labels))}|f={int(bool(forces))}|s={int(bool(stress))}".encode())
    for k, atoms in enumerate(images or ()):
        numbers, positions, cell, pbc = structure_arrays(atoms, first_index + k)
        arrays = [numbers.astype("<i8"), positions.astype("<f8"), cell.astype("<f8"), pbc.astype(np.uint8)]
        if with_labels:
            lab = labels(atoms, first_index + k, forces=forces, stress=stress)
            arrays += [np.asarray(lab[key], dtype="<f8") for key in ("energy", "forces", "stress") if key in lab]
        h.update(struct.pack("<Q", len(arrays)))
        for arr in arrays:
            raw = np.ascontiguousarray(arr).tobytes()
            h.update(struct.pack("<Q", len(raw)) + raw)
    return h.hexdigest()


def _check_overwritable(path: str, map_size: int) -> None:
    """overwrite=True replaces only an amptorch store (never a pickled store of the original, or another LMDB)."""
    env = lmdb.open(path, subdir=False, readonly=True, lock=False, readahead=False, meminit=False)
    try:
        with env.begin() as txn:
            _get_metadata(txn, path)
            _refuse_foreign(txn, path)
    finally:
        env.close()


def _refuse_foreign(txn, path: str) -> None:
    """InputError if an LMDB without our metadata holds entries (a pickled store of the original, or another's)."""
    if txn.get(METADATA_KEY) is not None:
        return
    first = next(iter(txn.cursor().iternext(values=False)), None)
    if first is None:
        return
    if txn.get(b"length") is not None:
        raise InputError(
            f"lmdb {path!r}: a pickled store of the original AmpTorch; expected an amptorch store (convert it "
            f"first: amptorch convert-lmdb {path} --out new.lmdb, or write to another path)"
        )
    raise InputError(
        f"lmdb {path!r}: an LMDB of another program (first key {bytes(first)[:40]!r}); expected an amptorch store "
        "or a new path"
    )


def _commit(env: lmdb.Environment, keys: Sequence[int], blobs: Sequence[bytes], meta: dict) -> None:
    """One transaction: the records and the metadata that counts them (they never disagree)."""
    with env.begin(write=True) as txn:
        for k, blob in zip(keys, blobs, strict=True):
            txn.put(record_key(k), blob)
        txn.put(METADATA_KEY, json.dumps(meta).encode())


def _write(path, make, new_meta, exists, batch_size, progress, map_size):
    """The body of :func:`write_lmdb`, under the writer lock."""
    total = new_meta["total"]
    count = written = 0
    env = bar = None
    try:
        env = _open_write(path, map_size)
        with env.begin(write=True) as txn:
            old = _get_metadata(txn, path)
            _refuse_foreign(txn, path)
            if old is not None:
                _check_compatible(old, new_meta, path)
                keep = {k: v for k, v in old.items() if k not in new_meta}
                new_meta.update(keep)
                count = sum(1 for k in range(total) if txn.get(record_key(k)) is not None)
                _check_inputs(old, new_meta, count, path)
            new_meta["count"] = count
            txn.put(METADATA_KEY, json.dumps(new_meta).encode())
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=count, desc="writing lmdb", unit="struct")
        for start in range(0, total, batch_size):
            stop = min(total, start + batch_size)
            with env.begin() as txn:
                missing = [k for k in range(start, stop) if txn.get(record_key(k)) is None]
            if not missing:
                continue
            blobs = [encode_record(r) for r in make(missing)]
            new_meta["count"] = count + len(missing)
            _commit(env, missing, blobs, new_meta)
            count += len(missing)
            written += len(missing)
            if bar is not None:
                bar.update(len(missing))
        env.sync(True)
    except BaseException as err:
        if bar is not None:
            bar.close()
            bar = None
        if env is not None:
            env.close()
            env = None
        if not exists and count == 0:  # nothing useful made: leave no empty store behind
            with contextlib.suppress(OSError):
                os.unlink(path)
        if isinstance(err, lmdb.MapFullError):
            raise InputError(
                f"map_size: {map_size} bytes is too small for {path!r}; expected a larger map_size"
            ) from None
        if isinstance(err, (OSError, lmdb.Error)) and not isinstance(err, InputError):
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            kept = f"the {count} structures committed are kept: run again to resume" if count else "nothing was kept"
            raise InputError(
                f"lmdb {path!r}: cannot write ({reason}); expected a writable file with free disk space ({kept})"
            ) from None
        raise
    finally:
        if bar is not None:
            bar.close()
        if env is not None:
            env.close()
    return new_meta


# ---------------------------------------------------------------------- reading


class LmdbDataset(Dataset):
    """Records of one or more LMDB files as a torch-style Dataset (``len``, ``[k]`` -> record).

    ``[k]`` is a FeatureRecord, or for a geometry store a GeometryRecord; after
    :meth:`neighbors_within` (recompute-mode training) each geometry record
    read gets its neighbour list there, so DataLoader workers build them.

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
        cutoff: neighbour-list cutoff (Å) of geometry records read (see
            :meth:`neighbors_within`); None: records as stored.

    Attributes:
        metadata: the first file's metadata dict; ``metadatas`` all of them.
    """

    def __init__(
        self,
        path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
        cache: str = "no",
        cache_size: int = 4096,
        allow_incomplete: bool = False,
        cutoff: float | None = None,
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
            for key in ("kind", *_FLAGS, "n_features"):
                default = "features" if key == "kind" else None  # stores before geometry records hold features
                if m.get(key, default) != first.get(key, default):
                    raise InputError(
                        f"lmdb_path: {p!r} has {key}={m.get(key, default)!r}, {paths[0]!r} has "
                        f"{first.get(key, default)!r}; expected the same"
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
        self.cutoff: float | None = None
        if cutoff is not None:
            self.neighbors_within(cutoff)
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
    def kind(self) -> str:
        """"features" (FeatureRecords) or "geometry" (GeometryRecords)."""
        return str(self.metadata.get("kind", "features"))

    def neighbors_within(self, cutoff: float) -> LmdbDataset:
        """Give every geometry record read a neighbour list within ``cutoff`` Å (built where it is read: in
        DataLoader workers). Returns self; an InputError for a store of fingerprints."""
        if self.kind != "geometry":
            raise InputError(f"lmdb {self.paths[0]!r}: holds fingerprints; expected a geometry store for neighbour "
                             "lists")  # fmt: skip
        cutoff = float(cutoff)
        if not cutoff > 0:
            raise InputError(f"cutoff: got {cutoff}; expected a positive number of Å")
        self.cutoff = cutoff
        return self

    @property
    def elements(self) -> list[int]:
        """Sorted atomic numbers present in all files."""
        return sorted({int(z) for m in self.metadatas for z in m.get("elements", [])})

    def descriptor(self) -> Descriptor:
        """The descriptor the data were made with (rebuilt from the stored settings)."""
        from amptorch.descriptors import from_settings

        if self.metadata.get("descriptor") is None:
            what = "a geometry store holds no fingerprints" if self.kind == "geometry" else "no descriptor settings"
            raise InputError(f"lmdb {self.paths[0]!r}: {what}; expected a store of fingerprints")
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
        checksum = True if self.metadatas[db].get("version", 1) >= 2 else None  # version 1: no checksums
        return decode_record(raw, key=f"{local} of {self.paths[db]!r}", checksum=checksum)

    def __getitem__(self, index: int) -> FeatureRecord | GeometryRecord:
        record = self.raw(index)
        if self.cutoff is not None:
            return record.with_neighbors(self.cutoff)
        return record

    def raw(self, index: int) -> FeatureRecord | GeometryRecord:
        """Record ``index`` as stored (a geometry record without its neighbour list)."""
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
    """The original's loader: ``cache_type`` "no" | "partial" | "full" (see :class:`LmdbDataset`).

    A folder with ``store.json`` (:func:`amptorch.data.shards.build_store`) opens as a ShardedDataset.
    """
    paths = [lmdb_paths] if isinstance(lmdb_paths, (str, os.PathLike)) else list(lmdb_paths)
    folders = [p for p in paths if os.path.isdir(p)]
    if folders:
        from amptorch.data.shards import ShardedDataset

        if len(paths) > 1:
            raise InputError(f"lmdb_path: {os.fspath(folders[0])!r} is a sharded store in a list of {len(paths)}; "
                             "expected one store folder, or a list of LMDB files")  # fmt: skip
        return ShardedDataset(paths[0], cache=cache_type)
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
    "check_lmdb_file",
    "inputs_fingerprint",
    "writer_lock",
]
