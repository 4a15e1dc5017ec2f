"""Latent distance: how far an atom's hidden representation lies from the training atoms'.

At fit time the per-atom activations of one hidden layer (default: the last,
the ``latent`` of ``AtomisticModel``) are computed for the training set and
stored with the checkpoint, per element. At prediction, each atom's raw σ is
the mean Euclidean distance to its k nearest stored latents of the same
element (all elements for one never seen), found with scikit-learn
(``NearestNeighbors``, tree or brute force) or faiss (``IndexFlatL2``, exact,
BLAS); a structure's raw σ aggregates its atoms' (sum, mean or max). The
raw σ is in latent units; ``amptorch calibrate`` gives it eV and eV/Å.

Memory: at most ``max_atoms`` latents are kept per element, a uniform random
subsample drawn while streaming over the training set (priority sampling:
every atom gets a random key and the ``max_atoms`` smallest keys stay), so
fitting on 10^6 atoms holds ``elements × max_atoms × H`` floats, never all
latents (default 50 000 per element: 4 MB per element for H = 20 in float32).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from amptorch.data import collate
from amptorch.errors import InputError
from amptorch.uq.base import append_output, finish_output, new_output, record_chunks

AGGREGATES = ("mean", "sum", "max")
INDEXES = ("auto", "sklearn", "faiss")
FAISS_FROM = 2_000  # stored latents of one element from which "auto" takes faiss (exact search costs ∝ n)
IVF_FROM = 4_096  # from here faiss searches an inverted-file index (approximate): ~√n lists, NPROBE visited
NPROBE = 8
SMALL_QUERY = 4_096  # faiss queries of fewer atoms run on one thread (thread start-up outweighs the work)
DEFAULT_MAX_ATOMS = 50_000


def check_latent_options(k=5, aggregate="mean", index="auto", max_atoms=DEFAULT_MAX_ATOMS, layer=-1) -> dict:
    """The latent-distance settings, checked (one-line InputError naming the key); the JSON of ``uq.latent``."""
    for key, v, lo in (("k", k, 1), ("max_atoms", max_atoms, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InputError(f"{key}: got {v!r}; expected an integer ≥ {lo}")
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise InputError(f"layer: got {layer!r}; expected a hidden-layer index (0 first, -1 last)")
    aggregate, index = str(aggregate).lower(), str(index).lower()
    if aggregate not in AGGREGATES:
        raise InputError(f"aggregate: got {aggregate!r}; expected one of {list(AGGREGATES)}")
    if index not in INDEXES:
        raise InputError(f"index: got {index!r}; expected one of {list(INDEXES)}")
    return {"k": k, "aggregate": aggregate, "index": index, "max_atoms": max_atoms, "layer": layer}


def _cut(body: nn.Sequential, layer: int) -> nn.Sequential:
    """The hidden stack up to and including hidden layer ``layer`` (its activation and dropout)."""
    starts = [i for i, m in enumerate(body) if isinstance(m, nn.Linear)]
    return body[: starts[layer + 1]] if layer + 1 < len(starts) else body


def hidden_activations(model, features: torch.Tensor, numbers: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """(N, H_layer) activations of hidden layer ``layer`` for raw features (N, F) (eval mode)."""
    net = model.network
    n_layers = len(net.hidden_layers)
    if not -n_layers <= layer < n_layers:
        raise InputError(f"uq.latent.layer: got {layer}; the network has hidden layers 0..{n_layers - 1}")
    layer %= n_layers
    x = (features - model.feature_shift.index_select(0, numbers)) / model.feature_scale.index_select(0, numbers)
    if layer == n_layers - 1:
        return net.forward_latent(x, numbers)[1]
    if hasattr(net, "body"):  # SingleNN: one stack for all elements
        return _cut(net.body, layer)(x)
    slots = net.element_slots(numbers, "BPNN")  # BPNN: each element's own stack
    out = x.new_zeros((x.shape[0], net.hidden_layers[layer]))
    for k, body in enumerate(net.bodies):
        sel = torch.nonzero(slots == k).squeeze(1)
        if sel.numel():
            out = out.index_copy(0, sel, _cut(body, layer)(x.index_select(0, sel)))
    return out


class _Reservoir:
    """A uniform random subsample of at most ``size`` rows per element of a stream (priority sampling)."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # Z -> (keys (m,), latents (m, H))

    def add(self, latents: np.ndarray, numbers: np.ndarray) -> None:
        keys = self.rng.random(len(numbers))
        for z in np.unique(numbers).tolist():
            sel = numbers == z
            k, x = keys[sel], latents[sel]
            if z in self.kept:
                k, x = np.concatenate([self.kept[z][0], k]), np.concatenate([self.kept[z][1], x])
            if len(k) > self.size:
                keep = np.argpartition(k, self.size - 1)[: self.size]
                k, x = k[keep], x[keep]
            self.kept[z] = (k, x)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        zs = sorted(self.kept)
        latents = np.concatenate([self.kept[z][1] for z in zs]).astype(np.float32)
        numbers = np.concatenate([np.full(len(self.kept[z][0]), z, dtype=np.int64) for z in zs])
        return latents, numbers


def _faiss():
    try:
        return importlib.import_module("faiss")
    except ImportError:
        raise InputError(
            "uq.latent.index 'faiss': faiss-cpu is not installed; install amptorch[uq] (or pip install faiss-cpu), "
            "or use index 'sklearn'"
        ) from None


@contextmanager
def _one_thread(on: bool):
    """faiss's OpenMP pool on one thread for the block (restored after): a calculator's query of ~100 atoms
    takes 0.6 ms on one thread and 8-18 ms on two threads of a busy 2-core machine."""
    faiss = sys.modules.get("faiss") if on else None
    if faiss is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _faiss_index(ref: np.ndarray):
    """A faiss index over ``ref`` (n, H) float32: exact (IndexFlatL2) below IVF_FROM rows, else an inverted
    file of √n k-means lists of which NPROBE are searched (IndexIVFFlat: each query costs ~(1 + NPROBE)·√n
    distances instead of n)."""
    faiss = _faiss()
    ref = np.ascontiguousarray(ref, dtype=np.float32)
    d = ref.shape[1]
    if len(ref) < IVF_FROM:
        index = faiss.IndexFlatL2(d)
    else:
        nlist = int(np.sqrt(len(ref)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        # k-means on at most 64 points per list (faiss's own cap is 256): the lists only route the search
        rng = np.random.default_rng(0)
        sample = ref[rng.choice(len(ref), min(len(ref), 64 * nlist), replace=False)]
        index.cp.max_points_per_centroid = 64
        index.train(sample)
        index.nprobe = NPROBE
    index.add(ref)
    return index


class LatentDistance:
    """kNN distance in a hidden layer's space to the stored training latents.

    Args:
        k: neighbours averaged per atom.
        aggregate: per-structure σ from the atoms' distances: "mean", "sum" or "max".
        index: "sklearn" (exact), "faiss" (exact below 4096 stored latents of an element, an inverted-file
            index above) or "auto" (faiss from 2000 stored latents of an element, when installed).
        max_atoms: latents kept per element (uniform random subsample of the training atoms).
        layer: hidden layer (0 first, -1 the last; -1 costs no extra network pass).
        seed: seed of the subsample.
    """

    name = "latent"

    def __init__(self, k: int = 5, aggregate: str = "mean", index: str = "auto",
                 max_atoms: int = DEFAULT_MAX_ATOMS, layer: int = -1, seed: int = 0):  # fmt: skip
        opts = check_latent_options(k, aggregate, index, max_atoms, layer)
        self.k, self.aggregate, self.index = opts["k"], opts["aggregate"], opts["index"]
        self.max_atoms, self.layer, self.seed = opts["max_atoms"], opts["layer"], int(seed)
        self.latents: np.ndarray | None = None  # (n, H) float32
        self.numbers: np.ndarray | None = None  # (n,) int64
        self.n_seen = 0  # training atoms the subsample was drawn from
        self._indexes: dict = {}

    @property
    def fitted(self) -> bool:
        return self.latents is not None

    def settings(self) -> dict:
        return {"k": self.k, "aggregate": self.aggregate, "index": self.index, "max_atoms": self.max_atoms,
                "layer": self.layer, "seed": self.seed, "n_seen": self.n_seen}  # fmt: skip

    def check(self, potential) -> None:
        if not self.fitted:
            raise InputError("uncertainty 'latent': the checkpoint stores no training latents; expected a model "
                             "trained with uq.latent set (or LatentDistance().fit(potential, records))")  # fmt: skip

    # -- fitting ----------------------------------------------------------------------
    def batch_latents(self, potential, records) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H) latents and (N,) numbers of a list of FeatureRecords (one batch, no gradients)."""
        batch = collate(list(records)).to(potential.device, potential.dtype)
        potential.model.eval()
        with torch.no_grad():
            return hidden_activations(potential.model, batch.features, batch.numbers, self.layer), batch.numbers

    def fit(self, potential, train_records: Sequence, batch_size: int = 64) -> LatentDistance:
        """Store the latents of ``train_records`` (FeatureRecords, or anything that slices into lists of them,
        such as an LMDB split), at most ``max_atoms`` per element; returns self."""
        reservoir = _Reservoir(self.max_atoms, self.seed)
        n = 0
        for s in range(0, len(train_records), batch_size):
            lat, numbers = self.batch_latents(potential, train_records[s : s + batch_size])
            reservoir.add(lat.to("cpu", torch.float32).numpy(), numbers.cpu().numpy())
            n += int(numbers.shape[0])
        if n == 0:
            raise InputError("uq.latent: no training atoms to store latents of; expected a training split")
        self.set_latents(*reservoir.arrays())
        self.n_seen = n
        return self

    def set_latents(self, latents: np.ndarray, numbers: np.ndarray) -> None:
        latents = np.ascontiguousarray(latents, dtype=np.float32)
        numbers = np.asarray(numbers, dtype=np.int64)
        if latents.ndim != 2 or numbers.shape != (latents.shape[0],) or not np.isfinite(latents).all():
            raise InputError(f"latents: shapes {latents.shape} / {numbers.shape} or values not finite; expected "
                             "finite (n, H) latents and (n,) atomic numbers")  # fmt: skip
        if numbers.size and (numbers.min() < 0 or numbers.max() > 118):  # 0: one group for vectors of no element
            raise InputError("latent_numbers: values outside 0..118; expected the atomic numbers of the latents")
        self.latents, self.numbers = latents, numbers
        self._indexes = {}

    # -- queries ------------------------------------------------------------------------
    def _backend(self, n: int) -> str:
        if self.index != "auto":
            return self.index
        if n >= FAISS_FROM:
            try:
                importlib.import_module("faiss")
                return "faiss"
            except ImportError:
                pass
        return "sklearn"

    def _index_of(self, z: int):
        """(backend, index, k) for element z (all stored latents for an element never stored)."""
        if z not in self._indexes:
            sel = self.numbers == z
            ref = self.latents[sel] if sel.any() else self.latents
            k = min(self.k, len(ref))
            backend = self._backend(len(ref))
            if backend == "faiss":
                index = _faiss_index(ref)
            else:
                from sklearn.neighbors import NearestNeighbors

                index = NearestNeighbors(n_neighbors=k).fit(ref)
            self._indexes[z] = (backend, index, k)
        return self._indexes[z]

    def distances(self, latents: np.ndarray | torch.Tensor, numbers: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N,) mean distance of each atom's latent (N, H) to its k nearest stored latents of its element."""
        if isinstance(latents, torch.Tensor):
            latents = latents.detach().to("cpu", torch.float32).numpy()
        if isinstance(numbers, torch.Tensor):
            numbers = numbers.cpu().numpy()
        latents = np.ascontiguousarray(latents, dtype=np.float32)
        if self.latents is None:
            raise InputError("latent distance: no stored latents; call fit(potential, records) first")
        if latents.ndim != 2 or latents.shape[1] != self.latents.shape[1]:
            raise InputError(f"latents: shape {latents.shape}; expected (N, {self.latents.shape[1]})")
        out = np.zeros(len(numbers), dtype=np.float64)
        with _one_thread(len(numbers) < SMALL_QUERY):
            for z in np.unique(numbers).tolist():
                sel = np.flatnonzero(numbers == z)
                backend, index, k = self._index_of(int(z))
                if backend == "faiss":
                    d2, _ = index.search(latents[sel], k)
                    d = np.sqrt(np.maximum(d2, 0.0))
                else:
                    d, _ = index.kneighbors(latents[sel], n_neighbors=k)
                out[sel] = d.astype(np.float64).mean(axis=1)
        return out

    def aggregate_structures(self, atom_distance: np.ndarray, image: np.ndarray, n_structures: int) -> np.ndarray:
        """(B,) per-structure σ from per-atom distances (N,) and the structure index of each atom (N,)."""
        if self.aggregate == "max":
            out = np.zeros(n_structures)
            np.maximum.at(out, image, atom_distance)
            return out
        total = np.bincount(image, weights=atom_distance, minlength=n_structures)
        return total if self.aggregate == "sum" else total / np.bincount(image, minlength=n_structures)

    def evaluate(self, potential, records, forces: bool = True) -> dict[str, np.ndarray]:
        """Plain predictions of one batch of FeatureRecords + ``atom_distance`` (N,) and ``distance`` (B,)."""
        self.check(potential)
        last = self.layer % len(potential.model.network.hidden_layers) == len(potential.model.network.hidden_layers) - 1
        res = potential.evaluate(records, forces=forces, latent=last)
        if last:  # the latents come with the plain pass
            lat = res.pop("latent")
            numbers = np.concatenate([r.numbers for r in records])
        else:
            lat, numbers = self.batch_latents(potential, records)
        d = self.distances(lat, numbers)
        image = np.repeat(np.arange(len(records)), [r.n_atoms for r in records])
        res["atom_distance"] = d
        res["distance"] = self.aggregate_structures(d, image, len(records))
        return res

    def predict(self, potential, records_or_images, forces: bool = True, batch_size: int = 32,
                workers: int | None = None) -> dict:  # fmt: skip
        """Plain predictions + ``energy_std`` (B,) (aggregated distance) and ``forces_std`` [(n,)] (each atom's
        distance), both in latent units until calibrated."""
        self.check(potential)
        out = new_output(forces)
        for records in record_chunks(potential, records_or_images, forces, batch_size, workers):
            res = self.evaluate(potential, records, forces=forces)
            append_output(out, records, res, res["distance"], res["atom_distance"] if forces else None)
        return finish_output(out)

    # -- checkpoint state ----------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        self.check(None)
        return {"latent_vectors": self.latents, "latent_numbers": self.numbers}

    @classmethod
    def from_state(cls, info: dict, arrays: dict[str, np.ndarray], where: str = "uq.json latent") -> LatentDistance:
        try:
            opts = {k: info[k] for k in ("k", "aggregate", "index", "max_atoms", "layer")}
            out = cls(**opts, seed=int(info.get("seed", 0)))
        except KeyError as err:
            raise InputError(f"{where}: missing {err.args[0]!r}; expected the settings amptorch wrote") from None
        except InputError as err:
            raise err.within(where) from None
        out.set_latents(arrays["latent_vectors"], arrays["latent_numbers"])
        out.n_seen = int(info.get("n_seen", len(out.numbers)))
        return out


__all__ = ["AGGREGATES", "INDEXES", "LatentDistance", "check_latent_options", "hidden_activations"]
