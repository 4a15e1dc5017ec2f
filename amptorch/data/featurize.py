"""Structures -> FeatureRecords, with labels attached and an optional disk cache.

The cache keeps one ``.npz`` per structure under
``cache_dir/<descriptor.hash[:16]>/<structure hash>.npz``; the structure hash
covers atomic numbers, positions, cell, pbc and the derivative/strain/dtype
flags, so a changed structure or setting is a cache miss, never a wrong hit.
Files are written to a temporary name and moved into place (``os.replace``),
so a killed run leaves no half-written file; they are read with
``allow_pickle=False``. Only the fingerprints are cached, labels are read
from the structures on every call.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from ase import Atoms

from amptorch.data.io import labels
from amptorch.descriptors.base import Descriptor, structure_arrays
from amptorch.descriptors.record import FeatureRecord
from amptorch.errors import InputError
from amptorch.files import atomic_write, write_json

# fields a cache file holds (labels are not cached)
_CACHED = ("numbers", "features", "pair_i", "pair_j", "dfeat", "dfeat_strain", "cell", "pbc")


def structure_hash(
    atoms: Atoms, derivatives: bool, strain: bool, dtype=np.float64, index: int | None = None
) -> str:
    """sha256 (hex) of numbers, positions, cell and pbc bytes plus the computation flags."""
    numbers, positions, cell, pbc = structure_arrays(atoms, index)
    h = hashlib.sha256()
    for arr in (numbers.astype("<i8"), positions.astype("<f8"), cell.astype("<f8"), pbc.astype(np.uint8)):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(f"|d={int(bool(derivatives))}|s={int(bool(strain))}|t={np.dtype(dtype).str}".encode())
    return h.hexdigest()


def cache_folder(cache_dir: str | os.PathLike, descriptor: Descriptor) -> Path:
    """``cache_dir/<descriptor.hash[:16]>``: the cache of one descriptor setting."""
    return Path(cache_dir) / descriptor.hash[:16]


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (.npz) atomically (``amptorch.files.atomic_write``)."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _load_cached(path: Path, n_atoms: int, n_features: int) -> FeatureRecord | None:
    """The record stored at ``path``, or None if absent, unreadable or inconsistent."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k in _CACHED}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    feats = arrays.get("features")
    if feats is None or feats.shape != (n_atoms, n_features):
        return None
    return FeatureRecord.from_arrays(arrays)


def _write_settings(folder: Path, descriptor: Descriptor) -> None:
    """Record the descriptor settings next to the cache files (for people; not read back)."""
    target = folder / "descriptor.json"
    if not target.exists():
        write_json(target, {"hash": descriptor.hash, "settings": descriptor.settings()})


def featurize(
    images: Sequence[Atoms],
    descriptor: Descriptor,
    derivatives: bool = True,
    strain: bool = False,
    dtype=np.float64,
    workers: int | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    with_labels: bool = True,
    forces: bool = True,
    stress: bool = False,
    indices: Sequence[int] | None = None,
) -> list[FeatureRecord]:
    """Fingerprint every structure and attach its labels.

    Args:
        images: ase.Atoms structures (with calculators when ``with_labels``).
        descriptor: a GMP or GaussianSF.
        derivatives: store ``dfeat`` (p, F, 3), needed to train on forces.
        strain: store ``dfeat_strain`` (n, F, 3, 3), needed for stress.
        dtype: float64 or float32 fingerprints.
        workers: threads over structures (the kernel releases the GIL);
            None: all CPUs.
        progress: show a tqdm bar.
        cache_dir: when given, reuse / write one ``.npz`` per structure there.
        with_labels: read and check energy (and forces, stress) first; when
            False the records carry no targets (for prediction).
        forces, stress: which labels are required (with ``with_labels``).
        indices: the data-set index of each image, named in error messages
            (default 0, 1, ...; give them when featurizing a slice).

    Returns:
        One FeatureRecord per structure, in order: ``energy`` eV, ``forces``
        (n, 3) eV/Å, ``stress`` (6,) eV/Å^3 when requested.

    Raises:
        InputError: naming the structure index, for bad labels or structures.
    """
    images = list(images)
    idx = list(range(len(images))) if indices is None else [int(i) for i in indices]
    if len(idx) != len(images):
        raise InputError(f"indices: {len(idx)} given; expected one per structure ({len(images)})")
    if not isinstance(descriptor, Descriptor):
        raise InputError(f"descriptor: got {type(descriptor).__name__}; expected a GMP or GaussianSF")
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise InputError(f"dtype: got {dt}; expected float64 or float32")
    labs: list[dict] = [{} for _ in images]
    if with_labels:
        labs = [labels(a, idx[k], forces=forces, stress=stress) for k, a in enumerate(images)]
    records: list[FeatureRecord | None] = [None] * len(images)
    paths: list[Path | None] = [None] * len(images)
    n_feat = descriptor.length
    if cache_dir is not None:
        folder = cache_folder(cache_dir, descriptor)
        _write_settings(folder, descriptor)
        for k, atoms in enumerate(images):
            p = folder / f"{structure_hash(atoms, derivatives, strain, dt, idx[k])}.npz"
            paths[k] = p
            records[k] = _load_cached(p, len(atoms), n_feat)
    todo = [k for k, r in enumerate(records) if r is None]
    n_workers = max(1, workers or os.cpu_count() or 1)
    # few structures: give the spare threads to OpenMP over atoms
    n_threads = max(1, n_workers // max(1, len(todo)))

    def save(t: int, rec: FeatureRecord) -> None:
        path = paths[todo[t]]
        if path is not None:  # fingerprints only: labels are read from the structures every time
            save_npz_atomic(path, {k: v for k, v in rec.to_arrays().items() if k in _CACHED})

    done = descriptor.compute_many(
        [images[k] for k in todo], derivatives, strain, dt, workers=n_workers, progress=progress,
        indices=[idx[k] for k in todo], n_threads=n_threads, on_record=save,
    )  # fmt: skip
    for k, rec in zip(todo, done, strict=True):
        records[k] = rec
    out: list[FeatureRecord] = []
    for rec, lab in zip(records, labs, strict=True):
        assert rec is not None
        out.append(replace(rec, energy=lab.get("energy"), forces=lab.get("forces"), stress=lab.get("stress")))
    return out


__all__ = ["featurize", "structure_hash", "cache_folder", "save_npz_atomic"]
