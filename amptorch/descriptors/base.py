"""What every fingerprint shares: structure checks, the neighbour list, the
call into the C++ kernel, threading over structures and the settings hash.

A concrete descriptor implements ``settings()`` (a JSON-able dict that fully
determines its output), ``feature_names``, ``cutoff`` and ``_kernel``.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from amptorch.descriptors.neighbors import NeighborEntries, neighbor_entries
from amptorch.descriptors.record import FeatureRecord, voigt
from amptorch.errors import InputError, where

_DTYPES = {np.dtype(np.float64): False, np.dtype(np.float32): True}


def structure_arrays(atoms, index: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(numbers (n,), positions (n, 3) Å, cell (3, 3) Å, pbc (3,)) of an ase.Atoms."""
    try:
        numbers = np.asarray(atoms.numbers, dtype=np.int64)
        positions = np.asarray(atoms.positions, dtype=np.float64)
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
    except AttributeError:
        raise InputError(f"{where(index)}atoms: got {type(atoms).__name__}; expected an ase.Atoms") from None
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise InputError(f"{where(index)}positions: shape {positions.shape}; expected (n_atoms, 3)")
    bad = (numbers < 1) | (numbers > 118)
    if bad.any():
        raise InputError(
            f"{where(index)}numbers: atom {int(np.flatnonzero(bad)[0])} has atomic number "
            f"{int(numbers[bad][0])}; expected 1..118"
        )
    return numbers, positions, cell, pbc


def stored_labels(atoms) -> dict:
    """Energy (eV), forces (eV/Å), stress (Voigt, eV/Å^3) an attached calculator holds, if any (none computed)."""
    out: dict = {}
    calc = getattr(atoms, "calc", None)
    if calc is None:
        return out
    results = getattr(calc, "results", {})
    if "energy" in results:
        out["energy"] = float(results["energy"])
    if "forces" in results:
        out["forces"] = np.asarray(results["forces"], dtype=np.float64)
    if "stress" in results:
        out["stress"] = voigt(results["stress"])
    return out


class Descriptor(ABC):
    """Base of GMP and GaussianSF."""

    @property
    @abstractmethod
    def cutoff(self) -> float:
        """Neighbour cutoff radius in Å."""

    @abstractmethod
    def settings(self) -> dict:
        """JSON-able dict that fully determines the fingerprints (hashed)."""

    @property
    @abstractmethod
    def feature_names(self) -> list[str]:
        """One name per feature column."""

    @abstractmethod
    def _kernel(
        self,
        numbers: np.ndarray,
        nl: NeighborEntries,
        derivatives: bool,
        strain: bool,
        float32: bool,
        n_threads: int,
        index: int | None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Run the C++ kernel: (features, dfeat or None, dfeat_strain or None)."""

    @property
    def length(self) -> int:
        """Number of features per atom."""
        return len(self.feature_names)

    @property
    def hash(self) -> str:
        """sha256 of the canonical settings JSON: equal hashes mean equal fingerprints."""
        blob = json.dumps(self.settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def compute(
        self,
        atoms,
        derivatives: bool = True,
        strain: bool = False,
        dtype=np.float64,
        n_threads: int = 0,
        index: int | None = None,
    ) -> FeatureRecord:
        """Fingerprints of one structure.

        Args:
            atoms: ase.Atoms; isolated, slab (pbc per axis) or periodic.
            derivatives: also return ``dfeat`` (p, F, 3), d features[i] / d r_j.
            strain: also return ``dfeat_strain`` (n, F, 3, 3).
            dtype: float64 (default) or float32 for the outputs; the kernel
                always computes in float64.
            n_threads: OpenMP threads over atoms (0: the OpenMP default).
            index: structure index used in error messages.

        Returns:
            FeatureRecord with targets copied from ``atoms.calc`` when present.
        """
        from amptorch import _core  # noqa: F401  (import error surfaces here, once)

        dt = np.dtype(dtype)
        if dt not in _DTYPES:
            raise InputError(f"dtype: got {dt}; expected float64 or float32")
        numbers, positions, cell, pbc = structure_arrays(atoms, index)
        self.check_elements(numbers, index)
        nl = neighbor_entries(positions, cell, pbc, self.cutoff, index)
        feats, dfeat, dstrain = self._kernel(numbers, nl, derivatives, strain, _DTYPES[dt], n_threads, index)
        return FeatureRecord(
            numbers=numbers,
            features=feats,
            pair_i=nl.pair_i if derivatives else None,
            pair_j=nl.pair_j if derivatives else None,
            dfeat=dfeat,
            dfeat_strain=dstrain,
            cell=cell,
            pbc=pbc,
            **stored_labels(atoms),
        )

    def compute_many(
        self,
        images: Iterable,
        derivatives: bool = True,
        strain: bool = False,
        dtype=np.float64,
        workers: int | None = None,
        progress: bool = True,
        indices: Sequence[int] | None = None,
        n_threads: int = 1,
        on_record: Callable[[int, FeatureRecord], None] | None = None,
    ) -> list[FeatureRecord]:
        """Fingerprints of many structures, ``workers`` at a time (threads; the kernel drops the GIL).

        Args:
            indices: the structures' numbers in error messages (default: positions in ``images``).
            n_threads: OpenMP threads of each kernel call.
            on_record: called as ``on_record(k, record)`` in the worker as each structure is done
                (e.g. to write a cache file, so a killed run keeps what it finished).
        """
        images = list(images)
        idx = list(range(len(images))) if indices is None else [int(i) for i in indices]
        workers = min(workers or os.cpu_count() or 1, max(1, len(images)))

        def one(k: int) -> FeatureRecord:
            rec = self.compute(images[k], derivatives, strain, dtype, n_threads=n_threads, index=idx[k])
            if on_record is not None:
                on_record(k, rec)
            return rec

        bar = None
        if progress and images:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), desc=f"featurizing ({type(self).__name__})", unit="struct")
        out: list[FeatureRecord] = []
        try:
            if workers == 1:
                for k in range(len(images)):
                    out.append(one(k))
                    if bar is not None:
                        bar.update()
            else:
                with ThreadPoolExecutor(workers) as pool:
                    for rec in pool.map(one, range(len(images))):
                        out.append(rec)
                        if bar is not None:
                            bar.update()
        finally:
            if bar is not None:
                bar.close()
        return out

    def check_elements(self, numbers: np.ndarray, index: int | None = None) -> None:  # noqa: B027 (optional hook)
        """Raise InputError for elements the descriptor cannot handle (``index``: structure number in the message)."""

    @classmethod
    def from_settings(cls, settings: dict) -> Descriptor:
        """Rebuild from ``settings()`` without its ``kind`` (see ``registry.from_settings``)."""
        return cls(**settings)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "kind")
        return f"{type(self).__name__}({args})"


def species_index(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique atomic numbers (S,), species index of each atom (n,))."""
    uniq, inv = np.unique(numbers, return_inverse=True)
    return uniq, inv.astype(np.int64)


def check_cutoff(
    cutoff, function, gamma, functions: Mapping, names: tuple[str, str, str] = ("cutoff", "cutoff_fn", "gamma")
) -> tuple[float, float]:
    """(cutoff Å, gamma) checked: a positive finite cutoff (any real number, not a bool), a cutoff
    function among ``functions`` and, for "polynomial", an exponent gamma > 0; errors name ``names``."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real) or not (math.isfinite(cutoff) and cutoff > 0):
        raise InputError(f"got {cutoff!r}; expected a positive number of Å", names[0])
    if function not in functions:
        raise InputError(f"got {function!r}; expected one of {list(functions)}", names[1])
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or (function == "polynomial" and not gamma > 0):
        raise InputError(f"got {gamma!r}; expected a number > 0 for the polynomial cutoff", names[2])
    return float(cutoff), float(gamma)


def as_float_list(values: Sequence[float] | float, name: str) -> list[float]:
    """A list of finite floats (not bools), or InputError naming the parameter."""
    try:
        raw = np.atleast_1d(np.asarray(values, dtype=object))
        arr = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name}: got {values!r}; expected a list of numbers") from None
    if any(isinstance(v, (bool, np.bool_)) for v in raw.ravel()):
        raise InputError(f"{name}: got {values!r}; expected numbers, not true/false")
    if arr.ndim != 1 or not np.isfinite(arr).all():
        raise InputError(f"{name}: got {values!r}; expected a flat list of finite numbers")
    return [float(v) for v in arr]
