"""What every uncertainty method shares: the method names, the output contract, and the batched sample pass.

Every method turns a :class:`~amptorch.potential.TrainedPotential` and some
structures into the plain predictions plus

* ``energy_std`` (B,) eV: the raw σ of each structure's energy,
* ``forces_std`` [(n_i,) eV/Å]: the raw σ of each atom's force, per Cartesian
  component (the root mean square over x, y, z of the component σ, so a
  calibrated interval is ``F_ic ± z σ_i`` for each component),

and, once the checkpoint is calibrated (``amptorch calibrate``),
``energy_uncertainty`` / ``forces_uncertainty`` (the calibrated σ, same shapes).

Sampling methods (ensembles, MC dropout) evaluate S samples of the per-atom
network in ONE batched pass over features repeated S times: a leaf
(S, N, F) tensor, so a single backward gives every sample's dE/dfeatures
(S, N, F) (each sample's energy depends only on its own copy), and the
forces of all samples follow from the stored derivative blocks by a
vmapped contraction (or, in the calculator, the fused kernel's force pass
per sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from amptorch.data import collate
from amptorch.descriptors.record import VOIGT_COLS, VOIGT_ROWS, FeatureRecord
from amptorch.errors import InputError
from amptorch.models.feature_layer import _strain_grad

UQ_METHODS = ("ensemble", "dropout", "latent")


def check_method(method: str, what: str = "uncertainty") -> str:
    """The method name, lower-cased; InputError naming ``what`` for anything outside :data:`UQ_METHODS`."""
    key = str(method).strip().lower()
    if key not in UQ_METHODS:
        from amptorch.models.mlp import nearest

        raise InputError(f"{what}: got {method!r}{nearest(key, UQ_METHODS)}; expected one of {list(UQ_METHODS)}")
    return key


@runtime_checkable
class UncertaintyMethod(Protocol):
    """An uncertainty method: ``name`` (one of :data:`UQ_METHODS`) and ``predict``."""

    name: str

    def predict(self, potential, records_or_images, forces: bool = True) -> dict:
        """Plain predictions + ``energy_std`` (B,) eV and ``forces_std`` [(n_i,) eV/Å] (raw σ)."""
        ...


class SamplingMethod:
    """Base of the methods that draw S samples of the per-atom energies (ensembles, MC dropout).

    Subclasses implement :meth:`sample_energies`; ``replaces_prediction`` says whether the sample mean
    is the prediction (ensembles) or the plain model's deterministic pass is (MC dropout).
    """

    name = ""
    replaces_prediction = False

    @property
    def samples(self) -> int:
        """S, the number of samples drawn per pass."""
        raise NotImplementedError

    def check(self, potential) -> None:
        """InputError (one line) when ``potential`` cannot give this method."""

    def sample_energies(self, model, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """(S, N) per-atom energies (eV) from raw features (S, N, F) (the same features repeated S times,
        a leaf that may require grad) and atomic numbers (N,)."""
        raise NotImplementedError

    # -- the batched pass ---------------------------------------------------------
    def sample_pass(
        self, model, features: torch.Tensor, numbers: torch.Tensor, grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-atom energies (S, N) eV and dE/dfeatures (S, N, F) (None unless ``grad``) in one pass.

        Args:
            model: the potential's AtomisticModel.
            features: (N, F) raw features on the model's device and dtype.
            numbers: (N,) atomic numbers on the model's device.
        """
        x = features.detach().unsqueeze(0).expand(self.samples, *features.shape).clone()
        with torch.set_grad_enabled(grad):
            x.requires_grad_(grad)
            energies = self.sample_energies(model, x, numbers)  # (S, N)
            dEdG = torch.autograd.grad(energies.sum(), x)[0] if grad else None
        return energies.detach(), dEdG

    def evaluate(self, potential, records: Sequence[FeatureRecord], forces: bool = True,
                 stress: bool = False, plain: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
        """Every sample's predictions for FeatureRecords (one batch): ``energy`` (S, B) eV, ``energies``
        (S, N) eV and, when asked, ``forces`` (S, N, 3) eV/Å and ``stress`` (S, B, 6) Voigt eV/Å^3 (NaN rows
        for structures that are not fully periodic) (float64 numpy); with ``plain``, also the plain model's
        ``plain_energy`` (B,) and ``plain_forces`` (N, 3) from the same batch."""
        self.check(potential)
        model = potential.model
        model.eval()
        batch = collate(list(records)).to(potential.device, potential.dtype)
        if batch.features is None:
            raise InputError("records: geometry records without features; expected FeatureRecords", "uncertainty")
        energies, dEdG = self.sample_pass(model, batch.features, batch.numbers, grad=forces or stress)
        n_struct = batch.n_structures
        energy = energies.new_zeros((energies.shape[0], n_struct)).index_add(1, batch.image, energies)
        out = {"energy": energy, "energies": energies}
        if plain:  # the plain prediction's pass on the same batch (dropout off; an ensemble's mean)
            res = potential.predictor.eval()(batch, forces=forces, create_graph=False)
            out.update({f"plain_{k}": v.detach() for k, v in res.items()})
        if forces:
            out["forces"] = -forces_from_feature_grads(dEdG, batch)
        if stress:
            out["stress"] = stress_from_feature_grads(dEdG, batch)
        return {k: v.to("cpu", torch.float64).numpy() for k, v in out.items()}

    def predict(self, potential, records_or_images, forces: bool = True, batch_size: int = 32,
                workers: int | None = None) -> dict:  # fmt: skip
        """Predictions and raw σ for structures (ase.Atoms, a file, a glob) or FeatureRecords.

        Returns ``energy`` [eV], ``energies`` [(n,) eV per atom], ``forces`` [(n, 3) eV/Å] (the sample mean
        for ensembles, the plain model's deterministic pass otherwise), ``energy_std`` (B,) eV,
        ``forces_std`` [(n,) eV/Å] and ``n_atoms`` (B,).
        """
        self.check(potential)
        out = new_output(forces)
        for records in record_chunks(potential, records_or_images, forces, batch_size, workers):
            res = self.evaluate(potential, records, forces=forces, plain=not self.replaces_prediction)
            stats = sample_stats(res["energy"], res.get("forces"))
            if self.replaces_prediction:
                plain = {"energy": stats["energy"], "energies": res["energies"].mean(0), "forces": stats.get("forces")}
            else:
                plain = {k: res.get(f"plain_{k}") for k in ("energy", "energies", "forces")}
            append_output(out, records, plain, stats["energy_std"], stats.get("forces_std"))
        return finish_output(out)


# -- statistics ---------------------------------------------------------------------
def spread(x: np.ndarray | torch.Tensor, axis: int = 0):
    """Population standard deviation over ``axis``, exactly 0 for identical samples.

    Shifted by the first sample before the two-pass variance, so identical samples give
    exact zeros (no round-off from the mean) and close samples lose no digits.
    """
    if isinstance(x, torch.Tensor):
        d = x - x.narrow(axis, 0, 1)
        return (d - d.mean(dim=axis, keepdim=True)).square().mean(dim=axis).sqrt()
    d = x - np.take(x, [0], axis=axis)
    return np.sqrt(np.square(d - d.mean(axis=axis, keepdims=True)).mean(axis=axis))


def sample_stats(energy: np.ndarray, forces: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Mean and σ over samples: ``energy`` (S, B) eV → mean (B,), ``energy_std`` (B,); ``forces``
    (S, N, 3) eV/Å → mean (N, 3), ``forces_std`` (N,) (RMS over x, y, z of each component's σ)."""
    out = {"energy": energy.mean(axis=0), "energy_std": spread(energy, 0)}
    if forces is not None:
        out["forces"] = forces.mean(axis=0)
        out["forces_std"] = np.sqrt(np.square(spread(forces, 0)).mean(axis=-1))
    return out


def forces_from_feature_grads(dEdG: torch.Tensor, batch) -> torch.Tensor:
    """dE/dpositions (S, N, 3) eV/Å from per-sample dE/dfeatures (S, N, F), through the batch's stored
    derivative blocks (the forces are its negative).

    The same contraction as the feature layer's (``grad[j] += g[i]·dfeat[p]``, ``grad[i] -= g[i]·dfeat[p]``
    for pair p = (i, j)), for all S samples at once without gathering g per pair (S·P·F values): each
    centre's pair blocks are stacked, (N, K·3, F) with K the most pairs of any centre, and one batched
    matmul (N, K·3, F) @ (N, F, S) gives every sample's per-pair terms.
    """
    if batch.dfeat is None:
        raise InputError(
            "records: no feature derivatives (dfeat); featurize with derivatives=True for forces", "uncertainty"
        )
    S, N, F = dEdG.shape
    pair_i, pair_j, dfeat = batch.pair_i, batch.pair_j, batch.dfeat
    if pair_i.numel() == 0:
        return dEdG.new_zeros((S, N, 3))
    counts = torch.bincount(pair_i, minlength=N)  # (N,) pairs per centre
    K = int(counts.max())
    slot = torch.arange(pair_i.numel(), device=pair_i.device)
    if bool((pair_i[1:] >= pair_i[:-1]).all()):  # centre-sorted already (the descriptors' layout): no copy
        centre, neighbour, blocks_of = pair_i, pair_j, dfeat
    else:
        order = torch.argsort(pair_i, stable=True)
        centre, neighbour, blocks_of = pair_i[order], pair_j[order], dfeat[order]
    slot = slot - (torch.cumsum(counts, 0) - counts)[centre]  # position of each pair among its centre's
    # built in the matmul's layout (one write, no permuted copy); zeros only where some centre has padding
    uniform = bool((counts == K).all())
    blocks = dfeat.new_empty((N, K, 3, F)) if uniform else dfeat.new_zeros((N, K, 3, F))
    blocks[centre, slot] = blocks_of.transpose(1, 2)
    # (N, K·3, F) @ (N, F, S): every sample's per-pair terms, (N·K, 3, S)
    terms = torch.bmm(blocks.view(N, K * 3, F), dEdG.permute(1, 2, 0)).view(N * K, 3, S)
    # neighbour j moves: plus, scattered from every (centre, slot), padding sent to a spare row N;
    # centre i moves: minus its pairs' sum (padding slots hold zeros)
    target = torch.full((N * K,), N, dtype=torch.long, device=pair_i.device)
    target[centre * K + slot] = neighbour
    grad = dEdG.new_zeros((N + 1, 3, S)).index_add(0, target, terms)[:N]
    grad = grad - terms.view(N, K, 3, S).sum(dim=1)
    return grad.permute(2, 0, 1)


def stress_from_feature_grads(dEdG: torch.Tensor, batch) -> torch.Tensor:
    """(S, B, 6) Voigt stress (eV/Å^3, ASE sign; NaN rows without a volume) from per-sample dE/dfeatures
    (S, N, F), through the batch's strain derivative blocks (vmapped over samples)."""
    if batch.dfeat_strain is None:
        raise InputError("records: no strain derivatives; featurize with strain=True for stress", "uncertainty")
    b = batch.n_structures
    virial = torch.vmap(lambda g: _strain_grad(g, batch.dfeat_strain, batch.image, b))(dEdG)  # (S, B, 3, 3)
    s = virial / batch.volume.view(1, -1, 1, 1)  # NaN volume: NaN rows
    s = 0.5 * (s + s.transpose(-1, -2))
    return s[..., VOIGT_ROWS, VOIGT_COLS]


# -- inputs and outputs ---------------------------------------------------------------
def record_chunks(potential, records_or_images, forces: bool, batch_size: int = 32, workers: int | None = None):
    """Chunks of FeatureRecords: records as given (a list, or anything that slices into lists of them, such
    as an LMDB split), or structures checked against the potential's element policy and featurized (with
    derivatives when ``forces``; ``workers`` featurizing threads, None: all CPUs) chunk by chunk."""
    items = records_or_images
    if isinstance(items, FeatureRecord):
        items = [items]
    sliceable = hasattr(items, "__len__") and hasattr(items, "__getitem__") and not isinstance(items, (str, bytes))
    if sliceable and len(items) and isinstance(list(items[0:1])[0], FeatureRecord):
        for start in range(0, len(items), batch_size):
            yield list(items[start : start + batch_size])
        return
    yield from potential.featurized_chunks(items, derivatives=forces, batch_size=batch_size, workers=workers)


def new_output(forces: bool) -> dict[str, list]:
    keys = ["energy", "energies", "energy_std", "n_atoms"] + (["forces", "forces_std"] if forces else [])
    return {k: [] for k in keys}


def append_output(out: dict, records, plain: dict, energy_std: np.ndarray, forces_std: np.ndarray | None) -> None:
    """Split one chunk's batched arrays into per-structure entries of ``out``."""
    offsets = np.concatenate([[0], np.cumsum([r.n_atoms for r in records])])
    for b in range(len(records)):
        sl = slice(offsets[b], offsets[b + 1])
        out["energy"].append(float(plain["energy"][b]))
        out["energies"].append(np.asarray(plain["energies"][sl], dtype=np.float64))
        out["energy_std"].append(float(energy_std[b]))
        out["n_atoms"].append(int(records[b].n_atoms))
        if "forces" in out:
            out["forces"].append(np.asarray(plain["forces"][sl], dtype=np.float64))
            out["forces_std"].append(np.asarray(forces_std[sl], dtype=np.float64))


def finish_output(out: dict) -> dict:
    out["energy_std"] = np.asarray(out["energy_std"], dtype=np.float64)
    out["n_atoms"] = np.asarray(out["n_atoms"], dtype=np.int64)
    return out


__all__ = ["UQ_METHODS", "SamplingMethod", "UncertaintyMethod", "check_method", "forces_from_feature_grads",
           "record_chunks", "sample_stats", "spread"]  # fmt: skip
