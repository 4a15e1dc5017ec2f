"""Sharded stores: a folder of LMDB shards read as one data set (issue 11).

A store is a folder::

    store.json          format, version, kind, descriptor settings + hash, flags, shard list, totals, elements
    shard-00000.lmdb    structures [0, shard_size), written by write_lmdb (its own lock, resume and checksums)
    shard-00001.lmdb    ...

:func:`build_store` splits the input indices into fixed shards and makes
each shard one task: in a local process pool by default, or on a Dask
cluster (``scheduler``: an address such as ``"tcp://node:8786"``, a
``distributed.Client`` or a cluster object such as ``LocalCluster`` or
dask-jobqueue's ``SLURMCluster``). A task reads only its own slice of the
input (a file path and an index range, or a generator and a seed range), so
nothing big is shipped, and writes only its own shard, so shards can be
written by different processes or machines (on a shared file system).
``store.json`` is written atomically once every shard is complete; until
then ``build.json`` records the settings and the shard plan.

Running :func:`build_store` again after a kill keeps every shard committed:
complete shards are skipped when the source is the one the build started
from (its :func:`source_id`: a file's path, size and modification time, or
a generator's own ``source_id``), else only checked against their inputs
(each shard's ``inputs_sha256``: its slice is read and hashed again,
nothing is written); partial ones resume where their last commit ended. Other settings, another
number of structures or other inputs are refused with an InputError that
offers ``overwrite=True``.

:class:`ShardedDataset` reads all shards as one :class:`LmdbDataset` (global
index -> shard and local index; files opened lazily, once per process, so it
pickles into DataLoader workers).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from ase import Atoms

from amptorch.data.lmdb import KINDS, LmdbDataset, _drop_reader, _is_open, read_metadata, write_lmdb, writer_lock
from amptorch.descriptors.base import Descriptor
from amptorch.errors import InputError
from amptorch.files import write_json

FORMAT = "amptorch-store"
VERSION = 1
STORE_FILE = "store.json"
BUILD_FILE = "build.json"  # the settings and shard plan while a build is unfinished
DEFAULT_SHARD_SIZE = 10_000
_SHARD = re.compile(r"^shard-\d{5,}\.lmdb(-lock)?$")
_SETTINGS = ("kind", "descriptor", "descriptor_hash", "derivatives", "strain", "dtype", "with_labels", "forces",
             "stress", "shard_size", "total")  # fmt: skip
_INSTALL = "pip install amptorch[cluster]"


# ----------------------------------------------------------------------- inputs


class StructureSource(Protocol):
    """What :func:`build_store` reads: a length and a slice of ase.Atoms (labelled for training).

    Optional: ``source_id``, a string that names exactly these structures (e.g. a generator and its seed),
    so that a rerun skips complete shards without reading them again.
    """

    def __len__(self) -> int: ...

    def read(self, start: int, stop: int) -> list[Atoms]: ...


@dataclass(frozen=True)
class FileSource:
    """Frames of one file that ``ase.io.read`` opens; a task reads ``path@start:stop`` only."""

    path: str
    count: int | None = None  # frames in the file (counted once when None)

    def __len__(self) -> int:
        if self.count is None:
            import ase.io

            try:
                n = sum(1 for _ in ase.io.iread(self.path, index=":"))
            except Exception as err:  # noqa: BLE001 - any reader failure is the same input error
                raise InputError(f"{self.path}: unreadable ({type(err).__name__}: {err}); expected a structure file",
                                 "source") from None  # fmt: skip
            object.__setattr__(self, "count", n)
        return int(self.count)

    def read(self, start: int, stop: int) -> list[Atoms]:
        import ase.io

        try:
            return list(ase.io.read(self.path, index=f"{start}:{stop}"))
        except Exception as err:  # noqa: BLE001
            raise InputError(f"{self.path}: frames {start}:{stop} unreadable ({type(err).__name__}: {err})",
                             "source") from None  # fmt: skip


@dataclass(frozen=True)
class ListSource:
    """Structures held in memory (a task is sent only its own slice)."""

    images: Sequence[Atoms]

    def __len__(self) -> int:
        return len(self.images)

    def read(self, start: int, stop: int) -> list[Atoms]:
        return list(self.images[start:stop])


def as_source(source: Any) -> StructureSource:
    """A :class:`StructureSource` of a file path, a list of ase.Atoms, or an object with ``__len__`` and
    ``read(start, stop)`` (e.g. a generator of structures from a seed range)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise InputError(f"no such file {path!r}; expected one structure file (extxyz, traj, ...)", "source")
        return FileSource(path)
    if isinstance(source, Atoms):
        return ListSource([source])
    if hasattr(source, "read") and hasattr(source, "__len__"):
        return source
    if isinstance(source, Sequence) and all(isinstance(a, Atoms) for a in source):
        return ListSource(list(source))
    raise InputError(f"got {type(source).__name__}; expected a file path, a list of ase.Atoms, or an object with "
                     "__len__ and read(start, stop)", "source")  # fmt: skip


def source_id(source: StructureSource) -> str | None:
    """A string that changes when the structures may have: a file's real path, size and mtime; a source's own
    ``source_id``; None for structures held in memory (their shards are checked by hashing them again)."""
    if isinstance(source, FileSource):
        st = os.stat(source.path)
        return f"file {os.path.realpath(source.path)} {st.st_size} {st.st_mtime_ns}"
    sid = getattr(source, "source_id", None)
    return None if sid is None else str(sid)


# ------------------------------------------------------------------------ tasks


def _task_input(source: StructureSource, start: int, stop: int) -> tuple:
    """What one task is sent: a slice of an in-memory list, else the source itself (a path, a seed range)."""
    if isinstance(source, ListSource):
        return ListSource(list(source.images[start:stop])), 0, stop - start
    return source, start, stop


def build_shard(task: dict) -> dict:
    """One task of :func:`build_store`: read this shard's structures and write its LMDB (resuming it).

    ``task``: ``path`` (the shard file), ``source`` ((source, start, stop): what to read), ``first_index`` (its
    first structure's number in the whole set), ``descriptor`` (settings, or None for geometry) and
    ``options`` (write_lmdb's keywords). Returns the shard's metadata.
    """
    from amptorch.descriptors import from_settings

    source, start, stop = task["source"]
    images = source.read(start, stop)
    if len(images) != stop - start:
        raise InputError(f"structures {task['first_index']}..{task['first_index'] + stop - start - 1}: read "
                         f"{len(images)}; expected {stop - start}", "source")  # fmt: skip
    descriptor = from_settings(task["descriptor"]) if task["descriptor"] is not None else None
    return write_lmdb(task["path"], images, descriptor, progress=False, **task["options"])


def _bar(total: int, progress: bool):
    """A tqdm bar over shards, or None."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="building shards", unit="shard")


def _run_local(tasks: list[dict], workers: int | None, progress: bool = False) -> list[dict]:
    bar = _bar(len(tasks), progress)
    try:
        if workers == 0:  # in this process, one shard after the other
            out = []
            for t in tasks:
                out.append(build_shard(t))
                if bar is not None:
                    bar.update(1)
            return out
        return _run_pool(tasks, workers, bar)
    finally:
        if bar is not None:
            bar.close()


def _run_pool(tasks: list[dict], workers: int | None, bar) -> list[dict]:
    n = min(workers or os.cpu_count() or 1, len(tasks))
    # spawn, not fork: a forked child of a process whose OpenMP or torch threads ran can hang
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        futures = [pool.submit(build_shard, t) for t in tasks]
        try:
            for f in concurrent.futures.as_completed(futures):
                f.result()  # the first failure stops the build
                if bar is not None:
                    bar.update(1)
            return [f.result() for f in futures]
        except concurrent.futures.process.BrokenProcessPool:
            raise _lost_worker("a worker process died") from None
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _lost_worker(what: str) -> InputError:
    return InputError(f"{what} while writing a shard (out of memory, or killed); the commits made are kept: "
                      "run build_store again to resume", "build_store")  # fmt: skip


def dask_client(scheduler: Any):
    """(client, owned) for ``scheduler``: an address, a ``distributed.Client``, or a cluster object
    (``LocalCluster``, ``SLURMCluster``); ``owned``: the client was made here (close it after)."""
    try:
        import distributed
    except ImportError:
        raise InputError(f"Dask is not installed; expected {_INSTALL} for a cluster", "scheduler") from None
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if isinstance(scheduler, str) or hasattr(scheduler, "scheduler_address"):
        try:
            return distributed.Client(scheduler, timeout="30s"), True
        except OSError as err:
            raise InputError(f"cannot reach {scheduler!r} ({err}); expected the address of a running Dask "
                             "scheduler, such as tcp://node:8786", "scheduler") from None  # fmt: skip
    raise InputError(f"got {type(scheduler).__name__}; expected an address, a distributed.Client or a cluster",
                     "scheduler")  # fmt: skip


def _run_dask(tasks: list[dict], client, progress: bool = False) -> list[dict]:
    from distributed import KilledWorker, as_completed

    bar = _bar(len(tasks), progress)
    try:
        futures = client.map(build_shard, tasks, pure=False)
        for f in as_completed(futures):
            f.result()  # the first failure stops the build
            if bar is not None:
                bar.update(1)
        return client.gather(futures)
    except KilledWorker:
        raise _lost_worker("a Dask worker died") from None
    finally:
        if bar is not None:
            bar.close()


# ------------------------------------------------------------------------ store


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.lmdb"


def _read_json(path: Path, what: str) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"store {str(path.parent)!r}: {what} unreadable ({type(err).__name__}); expected the JSON "
                         "written by build_store (build the store again with overwrite=True)") from None  # fmt: skip
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(f"store {str(path.parent)!r}: {what} has format {got!r}; expected {FORMAT!r}")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise InputError(f"store {str(path.parent)!r}: format version {version!r}; expected <= {VERSION} "
                         "(upgrade amptorch)")  # fmt: skip
    return meta


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sharded store folder (has ``store.json``)."""
    return (Path(path) / STORE_FILE).is_file()


def read_store(path: str | os.PathLike) -> dict:
    """The ``store.json`` of a finished store, checked (format, version, shard list); InputError otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"store {str(path)!r}: no such folder; expected a store written by build_store")
    if not (path / STORE_FILE).is_file():
        why = "its build is unfinished (run build_store again to resume)" if (path / BUILD_FILE).is_file() else (
            "no store.json")  # fmt: skip
        raise InputError(f"store {str(path)!r}: {why}; expected a finished store written by build_store")
    meta = _read_json(path / STORE_FILE, STORE_FILE)
    try:
        shards = meta["shards"]
        counts = [int(s["count"]) for s in shards]
        names = [str(s["name"]) for s in shards]
        total = int(meta["total"])
        if meta["kind"] not in KINDS:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise InputError(f"store {str(path)!r}: store.json damaged (shards, total or kind); expected the file "
                         "written by build_store") from None  # fmt: skip
    if sum(counts) != total or any(not _SHARD.match(n) for n in names):
        raise InputError(f"store {str(path)!r}: store.json damaged ({sum(counts)} structures in its shards, total "
                         f"{total}); expected the file written by build_store")  # fmt: skip
    return meta


def _complete_shard(path: Path, count: int, settings: dict) -> dict | None:
    """The metadata of a shard already written in full with these settings, else None (write or check it)."""
    if not path.is_file():
        return None
    was_open = _is_open(path)
    try:
        meta = read_metadata(path)
    except InputError:
        return None
    finally:
        if not was_open:
            _drop_reader(os.fspath(path))
    same = meta.get("kind", "features") == settings["kind"] and meta.get("descriptor_hash") == settings[
        "descriptor_hash"]  # fmt: skip
    return meta if same and meta.get("count") == meta.get("total") == count else None


def _settings_diff(old: dict, new: dict) -> list[str]:
    return [k for k in _SETTINGS if old.get(k) != new.get(k)]


def _clear(out: Path) -> None:
    """Remove a store's own files (overwrite); refuse a folder that holds anything else."""
    own = {STORE_FILE, BUILD_FILE, STORE_FILE + "-lock"}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own and not _SHARD.match(p.name))
    if foreign:
        raise InputError(f"store {str(out)!r}: holds {foreign[0]!r}, which build_store did not write; expected a "
                         "store or an empty folder (overwrite never removes other files)")  # fmt: skip
    for p in out.iterdir():
        if p.name != STORE_FILE + "-lock":
            p.unlink()


def build_store(
    source: Any,
    out: str | os.PathLike,
    kind: str = "geometry",
    descriptor: Descriptor | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    scheduler: Any = None,
    workers: int | None = None,
    overwrite: bool = False,
    derivatives: bool = True,
    strain: bool = False,
    dtype=np.float64,
    with_labels: bool = True,
    forces: bool = True,
    stress: bool = False,
    batch_size: int = 256,
    threads: int = 1,
    progress: bool = False,
) -> dict:
    """Write a sharded store of ``source`` in the folder ``out``; returns its ``store.json`` dict.

    Args:
        source: a structure file path, a list of ase.Atoms, or an object with ``__len__`` and
            ``read(start, stop) -> list[ase.Atoms]`` (see :func:`as_source`).
        out: the store folder (created).
        kind: "geometry" (GeometryRecords: geometry and labels, ~60-150 B per atom) or "features"
            (FeatureRecords of ``descriptor``).
        descriptor: required for "features", refused for "geometry".
        shard_size: structures per shard (one task each).
        scheduler: None (local process pool of ``workers``; ``workers=0``: this process) or a Dask
            scheduler address, ``distributed.Client`` or cluster object.
        overwrite: remove the store's files first (never files it did not write).
        derivatives, strain, dtype, with_labels, forces, stress, batch_size: as in :func:`write_lmdb`.
        threads: featurizing threads in each task.
        progress: a tqdm bar of the shards done.

    Resuming and errors: see the module docstring.
    """
    if kind not in KINDS:
        raise InputError(f"kind: got {kind!r}; expected one of {list(KINDS)}")
    if kind == "features" and not isinstance(descriptor, Descriptor):
        raise InputError("descriptor: required for a store of features; expected a GMP or GaussianSF")
    if kind == "geometry" and descriptor is not None:
        raise InputError("descriptor: a geometry store holds no fingerprints; expected descriptor=None")
    for name, value, low in (("shard_size", shard_size, 1), ("batch_size", batch_size, 1), ("threads", threads, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"{name}: got {value!r}; expected an integer >= {low}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                or workers < 0):  # fmt: skip
        raise InputError(f"workers: got {workers!r}; expected an integer >= 0 (0: this process)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"store {str(out)!r}: is a file; expected a folder for a sharded store (or a new path)")
    src = as_source(source)
    total = len(src)
    if total == 0:
        raise InputError("no structures; expected at least one", "source")
    # the cluster is reached before anything is written
    client, owned = dask_client(scheduler) if scheduler is not None else (None, False)
    try:
        return _build(src, out, kind, descriptor, int(shard_size), client, workers, overwrite, int(batch_size),
                      int(threads), dict(derivatives=derivatives, strain=strain, dtype=dtype, with_labels=with_labels,
                                         forces=forces, stress=stress, progress=bool(progress)))  # fmt: skip
    finally:
        if owned:
            client.close()


def _build(src: StructureSource, out: Path, kind: str, descriptor: Descriptor | None, shard_size: int, client: Any,
           workers: int | None, overwrite: bool, batch_size: int, threads: int, flags: dict) -> dict:  # fmt: skip
    """The body of :func:`build_store` (arguments checked, the Dask client made)."""
    total = len(src)
    derivatives, strain, dtype = flags["derivatives"], flags["strain"], flags["dtype"]
    with_labels, forces, stress = flags["with_labels"], flags["forces"], flags["stress"]
    geometry = kind == "geometry"
    settings = {
        "kind": kind,
        "descriptor": None if geometry else descriptor.settings(),
        "descriptor_hash": None if geometry else descriptor.hash,
        "derivatives": False if geometry else bool(derivatives or strain),
        "strain": False if geometry else bool(strain),
        "dtype": "float64" if geometry else np.dtype(dtype).name,
        "with_labels": bool(with_labels),
        "forces": bool(forces),
        "stress": bool(stress),
        "shard_size": int(shard_size),
        "total": int(total),
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"store {str(out)!r}: cannot create the folder ({err.strerror}); expected a writable "
                         "path") from None  # fmt: skip
    sid = source_id(src)
    with writer_lock(out / STORE_FILE):
        if overwrite:
            _clear(out)
        started_from = None  # the source_id of the build that wrote the shards there
        for name in (STORE_FILE, BUILD_FILE):
            if (out / name).is_file():
                old = _read_json(out / name, name)
                started_from = old.get("source_id")
                diff = _settings_diff(old, settings)
                if diff:
                    shown = [k for k in diff if k != "descriptor"] or diff
                    was = ", ".join(f"{k}={old.get(k)!r}" for k in shown)
                    now = ", ".join(f"{k}={settings[k]!r}" for k in shown)
                    raise InputError(
                        f"store {str(out)!r}: made with other settings ({was}; this call: {now}); expected the "
                        "same settings, or overwrite=True (amptorch featurize --overwrite), or another path"
                    )
        starts = list(range(0, total, int(shard_size)))
        write_json(out / BUILD_FILE, {"format": FORMAT, "version": VERSION, **settings, "shards": len(starts),
                                      "source_id": sid})  # fmt: skip
        options = {"batch_size": int(batch_size), "workers": int(threads), "derivatives": bool(derivatives or strain),
                   "strain": bool(strain), "dtype": np.dtype(dtype).name, "with_labels": bool(with_labels),
                   "forces": bool(forces), "stress": bool(stress), "kind": kind}  # fmt: skip
        if geometry:
            for key in ("derivatives", "strain", "dtype"):
                options.pop(key)
        tasks = [
            {"path": str(out / _shard_name(k)), "source": _task_input(src, s, min(total, s + int(shard_size))),
             "descriptor": settings["descriptor"], "first_index": s, "options": {**options, "first_index": s}}
            for k, s in enumerate(starts)
        ]  # fmt: skip
        metas: list = [None] * len(tasks)
        if sid is not None and sid == started_from:  # the same source: complete shards need no reading
            for k, t in enumerate(tasks):
                metas[k] = _complete_shard(Path(t["path"]), t["source"][2] - t["source"][1], settings)
        todo = [k for k, m in enumerate(metas) if m is None]
        if todo:
            run = [tasks[k] for k in todo]
            shown = flags["progress"]
            done = _run_local(run, workers, shown) if client is None else _run_dask(run, client, shown)
            for k, meta in zip(todo, done, strict=True):
                metas[k] = meta
        shards = []
        for k, (start, meta) in enumerate(zip(starts, metas, strict=True)):
            if meta["count"] != meta["total"] or meta["total"] != min(total, start + shard_size) - start:
                raise InputError(f"store {str(out)!r}: shard {k} holds {meta['count']} of {meta['total']} structures; "
                                 "expected a complete shard (run build_store again)")  # fmt: skip
            shards.append({"name": _shard_name(k), "start": start, "count": int(meta["count"]),
                           "inputs_sha256": meta["inputs_sha256"]})  # fmt: skip
        digest = hashlib.sha256("".join(s["inputs_sha256"] for s in shards).encode()).hexdigest()
        store = {
            "format": FORMAT,
            "version": VERSION,
            **settings,
            "n_features": int(metas[0]["n_features"]),
            "elements": sorted({int(z) for m in metas for z in m["elements"]}),
            "atoms": int(sum(m["atoms"] for m in metas)),
            "count": int(total),
            "inputs_sha256": digest,
            "source_id": sid,
            "shards": shards,
        }
        write_json(out / STORE_FILE, store)
        (out / BUILD_FILE).unlink(missing_ok=True)
    return store


# ---------------------------------------------------------------------- reading


class ShardedDataset(LmdbDataset):
    """All shards of a store folder read as one dataset: ``[k]`` -> record ``k`` of the whole set.

    Args:
        path: the store folder (with ``store.json``).
        cache, cache_size, cutoff: as :class:`LmdbDataset`.

    Attributes:
        metadata: the ``store.json`` dict (kind, descriptor, elements, totals, shards).
    """

    def __init__(self, path: str | os.PathLike, cache: str = "no", cache_size: int = 4096,
                 cutoff: float | None = None):  # fmt: skip
        self.root = Path(path)
        store = read_store(self.root)
        paths = [self.root / s["name"] for s in store["shards"]]
        for s, p in zip(store["shards"], paths, strict=True):
            if not p.is_file():
                raise InputError(f"store {str(self.root)!r}: shard {s['name']} missing; expected every shard listed "
                                 "in store.json")  # fmt: skip
        super().__init__([os.fspath(p) for p in paths], cache=cache, cache_size=cache_size, cutoff=None)
        for s, m in zip(store["shards"], self.metadatas, strict=True):
            if m.get("count") != s["count"] or m.get("inputs_sha256") != s.get("inputs_sha256"):
                raise InputError(f"store {str(self.root)!r}: shard {s['name']} holds other records than store.json "
                                 "lists; expected the shards it was built with")  # fmt: skip
            if m.get("kind", "features") != store["kind"] or m.get("descriptor_hash") != store["descriptor_hash"]:
                raise InputError(f"store {str(self.root)!r}: shard {s['name']} made with other settings than "
                                 "store.json; expected the shards it was built with")  # fmt: skip
        self.store = store
        if cutoff is not None:
            self.neighbors_within(cutoff)

    @property
    def metadata(self) -> dict:
        return self.store

    @property
    def elements(self) -> list[int]:
        return [int(z) for z in self.store["elements"]]


def open_store(path: str | os.PathLike, cache: str = "no", cutoff: float | None = None) -> LmdbDataset:
    """A single-file LMDB store or a sharded store folder, as one dataset."""
    if os.path.isdir(path):
        return ShardedDataset(path, cache=cache, cutoff=cutoff)
    return LmdbDataset(path, cache=cache, cutoff=cutoff)


def store_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a single-file store or the ``store.json`` of a sharded one.

    A file is read through this process's shared reader, closed again unless it was open before (so a
    later ``lmdb.open`` of the file elsewhere in the process is not refused as a second environment).
    """
    if os.path.isdir(path):
        return read_store(path)
    was_open = _is_open(path)
    try:
        return read_metadata(path)
    finally:
        if not was_open:
            _drop_reader(os.fspath(path))


__all__ = [
    "FileSource",
    "ListSource",
    "ShardedDataset",
    "StructureSource",
    "as_source",
    "build_shard",
    "build_store",
    "dask_client",
    "is_store",
    "open_store",
    "read_store",
    "source_id",
    "store_metadata",
]
