"""AtomisticModel: scaled features -> network -> energies; forces and stress by autograd."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

from amptorch.data.batch import Batch
from amptorch.descriptors.record import N_Z, VOIGT_COLS, VOIGT_ROWS
from amptorch.errors import InputError
from amptorch.models.bpnn import BPNN
from amptorch.models.feature_layer import batch_features
from amptorch.models.mlp import DEFAULT_LAYERS, DEFAULT_NODES
from amptorch.models.singlenn import SingleNN

NETWORKS = {"singlenn": SingleNN, "bpnn": BPNN}


def build_model(name: str, n_features: int, elements: Sequence[int], **options) -> nn.Module:
    """A network by name.

    Args:
        name: "singlenn" or "bpnn" (case-insensitive).
        n_features: F.
        elements: atomic numbers.
        options: the network's keyword arguments (hidden_layers, activation,
            batchnorm, dropout, dropout_rate, initialization, element_outputs
            for SingleNN); the original's ``num_layers`` / ``num_nodes`` give
            ``hidden_layers = [num_nodes] * num_layers`` when ``hidden_layers``
            is absent or None.

    Returns:
        SingleNN or BPNN.
    """
    key = str(name).strip().lower()
    if key not in NETWORKS:
        hit = difflib.get_close_matches(key, list(NETWORKS), n=1, cutoff=0.4)
        hint = f" (did you mean {hit[0]!r}?)" if hit else ""
        raise InputError(f"model name: got {name!r}{hint}; expected one of {sorted(NETWORKS)}")
    options = dict(options)
    num_layers = options.pop("num_layers", None)
    num_nodes = options.pop("num_nodes", None)
    if options.get("hidden_layers") is None:
        options.pop("hidden_layers", None)
        if num_layers is not None or num_nodes is not None:
            options["hidden_layers"] = [int(num_nodes or DEFAULT_NODES)] * int(num_layers or DEFAULT_LAYERS)
    cls = NETWORKS[key]
    allowed = list(cls.OPTIONS)
    for opt in options:
        if opt not in allowed:
            hit = difflib.get_close_matches(opt, allowed, n=1, cutoff=0.4)
            hint = f" (did you mean {hit[0]!r}?)" if hit else ""
            raise InputError(f"model option {opt!r}{hint}: not an option of {key}; expected one of {allowed}")
    return cls(n_features, elements, **options)


class AtomisticModel(nn.Module):
    """Energy, forces and stress of a batch of structures.

    e_i = energy_scale * net((features_i - feature_shift[Z_i]) / feature_scale[Z_i]) + energy_refs[Z_i]
    (eV), E_b = sum of e_i over the atoms of structure b. Forces and stress are
    -dE/dpositions and (1/V) dE/dstrain, by one autograd call, through
    :class:`FeatureFunction` (a batch of stored features and derivative blocks)
    or through the descriptor's torch twin (a geometry batch, recompute mode:
    features computed from positions r' = r (I + eps_b) and cells
    h' = h (I + eps_b), so forces and stress follow from the twin's graph; see
    :meth:`set_twin`).

    Args:
        network: SingleNN or BPNN (anything with ``n_features`` and
            ``forward_latent(x, numbers) -> ((N,), (N, H))``).
        feature_shift, feature_scale: (119, F) tables indexed by Z (default 0 and 1).
        energy_refs: (119,) eV/atom baseline (default 0).
        energy_scale: eV per network output unit (default 1).

    Buffers follow the module's dtype and device (``.double()``, ``.to``).
    """

    def __init__(
        self,
        network: nn.Module,
        feature_shift: torch.Tensor | None = None,
        feature_scale: torch.Tensor | None = None,
        energy_refs: torch.Tensor | None = None,
        energy_scale: float | torch.Tensor = 1.0,
    ):
        super().__init__()
        self.network = network
        F = int(network.n_features)
        self.n_features = F
        dtype = next(iter(network.parameters())).dtype
        self.register_buffer(
            "feature_shift", self._table(feature_shift, (N_Z, F), 0.0, dtype, "feature_shift")
        )
        self.register_buffer(
            "feature_scale", self._table(feature_scale, (N_Z, F), 1.0, dtype, "feature_scale")
        )
        self.register_buffer("energy_refs", self._table(energy_refs, (N_Z,), 0.0, dtype, "energy_refs"))
        self.register_buffer("energy_scale", self._table(energy_scale, (), 1.0, dtype, "energy_scale"))
        object.__setattr__(self, "_twin", None)  # not a submodule: never in the state_dict

    @property
    def twin(self) -> nn.Module | None:
        """The torch twin that features a geometry batch (recompute mode), or None."""
        return getattr(self, "_twin", None)

    def set_twin(self, twin: nn.Module | None) -> AtomisticModel:
        """Use ``twin`` (``DescriptorEntry.twin(descriptor, elements)``) to compute the features of geometry
        batches. It is held outside the parameters and buffers, so checkpoints are the same in both modes
        (a loaded model has no twin until one is set); it follows the model's dtype and device on use."""
        if twin is not None and int(getattr(twin, "n_features", self.n_features)) != self.n_features:
            raise InputError(f"twin: {twin.n_features} features per atom; the model expects {self.n_features}")
        object.__setattr__(self, "_twin", twin)
        object.__setattr__(self, "_twin_on", None)
        return self

    def _twin_features(self, batch: Batch, positions: torch.Tensor, strain: torch.Tensor | None) -> torch.Tensor:
        """(N, F) features of a geometry batch by the twin, from ``positions`` (N, 3) Å and ``strain`` (B, 3, 3)."""
        twin = self.twin
        if twin is None:
            raise InputError(
                "batch: geometry without features (recompute mode) and the model has no torch twin; "
                "call model.set_twin(...) with the descriptor's twin (its registry entry's twin)"
            )
        on = (positions.dtype, positions.device)
        if getattr(self, "_twin_on", None) != on:
            twin.to(device=positions.device, dtype=positions.dtype)
            object.__setattr__(self, "_twin_on", on)
        cell = batch.cell
        if strain is not None:  # r' = r (I + eps_b), h' = h (I + eps_b)
            positions = positions + torch.einsum("na,nab->nb", positions, strain.index_select(0, batch.image))
            cell = cell + cell @ strain
        return twin(batch.numbers, positions, cell, batch.pair_i, batch.pair_j, batch.shifts, batch.image)

    @staticmethod
    def _table(value, shape: tuple, default: float, dtype: torch.dtype, name: str) -> torch.Tensor:
        if value is None:
            return torch.full(shape, default, dtype=dtype)
        t = torch.as_tensor(value, dtype=dtype).clone()
        if tuple(t.shape) != shape:
            raise InputError(f"{name}: shape {tuple(t.shape)}; expected {shape}")
        if not bool(torch.isfinite(t).all()):
            raise InputError(f"{name}: contains NaN or inf")
        if name == "feature_scale" and bool((t == 0).any()):
            raise InputError(
                "feature_scale: contains zeros; expected nonzero scales (use 1 for constant features)"
            )
        return t

    @property
    def elements(self) -> list[int]:
        return list(self.network.elements)

    def _dtype_device(self) -> tuple[torch.dtype, torch.device]:
        p = next(iter(self.network.parameters()))
        return p.dtype, p.device

    def atomic_energies(self, features: torch.Tensor, numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom energies (N,) eV and last hidden activations (N, H) from raw features (N, F).

        ``features`` and ``numbers`` must already be on the model's device,
        features in its dtype; the calculator's fused path calls this directly
        and differentiates with respect to the features.
        """
        x = (features - self.feature_shift.index_select(0, numbers)) / self.feature_scale.index_select(0, numbers)
        out, h = self.network.forward_latent(x, numbers)  # (N,), (N, H)
        return self.energy_scale * out + self.energy_refs.index_select(0, numbers), h

    def forward(
        self,
        batch: Batch,
        forces: bool = True,
        stress: bool = False,
        latent: bool = False,
        create_graph: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Predict a batch.

        Args:
            batch: B structures, N atoms (cast here to the parameters' dtype and device).
            forces: also return "forces" (needs ``batch.dfeat``, or a geometry batch).
            stress: also return "stress" (needs ``batch.dfeat_strain``, or a geometry batch).
            latent: also return "latent".
            create_graph: keep the graph of forces/stress for a second
                backward (force training); default ``self.training``.

        Returns:
            dict: "energy" (B,) eV, "energies" (N,) eV, "forces" (N, 3) eV/Å,
            "stress" (B, 6) Voigt xx yy zz yz xz xy eV/Å^3 (ASE sign; NaN rows
            for structures that are not fully periodic), "latent" (N, H).
        """
        if create_graph is None:
            create_graph = self.training
        if batch.features is not None and batch.features.shape[1] != self.n_features:
            raise InputError(
                f"batch: {batch.features.shape[1]} features per atom; the model expects {self.n_features}"
            )
        numbers = batch.numbers  # checked before the move: no device sync
        if numbers.numel() and (int(numbers.min()) < 1 or int(numbers.max()) >= N_Z):
            raise InputError("batch.numbers: atomic numbers outside 1..118")
        dtype, device = self._dtype_device()
        batch = batch.to(device=device, dtype=dtype)
        numbers = batch.numbers  # on the model's device
        n_struct = batch.n_structures
        outer_grad = torch.is_grad_enabled()
        want_grad = forces or stress
        with torch.set_grad_enabled(outer_grad or want_grad):
            positions = strain = None
            if forces:
                if batch.geometry:  # the atoms' positions themselves (a leaf: the batch's tensor is left alone)
                    positions = batch.positions.detach().requires_grad_(True)
                else:  # zero displacements: only their gradient matters
                    positions = torch.zeros((numbers.shape[0], 3), dtype=dtype, device=device, requires_grad=True)
            if stress:
                strain = torch.zeros((n_struct, 3, 3), dtype=dtype, device=device, requires_grad=True)
            if batch.geometry:
                feats = self._twin_features(batch, batch.positions if positions is None else positions, strain)
            else:
                feats = batch_features(batch, positions, strain)  # (N, F)
            energies, h = self.atomic_energies(feats, numbers)  # (N,) eV, (N, H)
            energy = energies.new_zeros((n_struct,)).index_add(0, batch.image, energies)  # (B,) eV
            result = {"energy": energy, "energies": energies}
            if want_grad:
                inputs = [t for t in (positions, strain) if t is not None]
                if energy.requires_grad:
                    grads = torch.autograd.grad(
                        energy.sum(),
                        inputs,
                        create_graph=create_graph,
                        retain_graph=create_graph or outer_grad,
                        allow_unused=True,
                    )
                else:  # e.g. every network parameter frozen and no inputs: zero gradients
                    grads = [None] * len(inputs)
                grads = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]
                if forces:
                    result["forces"] = -grads[0]  # (N, 3) eV/Å
                if stress:
                    # (B, 3, 3) eV/Å^3; rows without a volume are NaN, through torch.where so that no
                    # NaN reaches the parameters' gradients when a stress loss masks them
                    periodic = torch.isfinite(batch.volume).view(-1, 1, 1)
                    inv_volume = torch.where(periodic, 1.0 / batch.volume.view(-1, 1, 1), 0.0)
                    s = torch.where(periodic, grads[-1] * inv_volume, float("nan"))
                    s = 0.5 * (s + s.transpose(1, 2))
                    result["stress"] = s[:, VOIGT_ROWS, VOIGT_COLS]  # (B, 6) Voigt xx yy zz yz xz xy
            if latent:
                result["latent"] = h
        if not outer_grad:
            result = {k: v.detach() for k, v in result.items()}
        return result
