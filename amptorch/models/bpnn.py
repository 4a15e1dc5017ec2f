"""BPNN: one MLP per element (Behler & Parrinello 2007)."""

from __future__ import annotations

import torch
from torch import nn

from amptorch.models.mlp import init_linear
from amptorch.models.network import AtomNetwork


class BPNN(AtomNetwork):
    """One MLP per element, applied to that element's atoms.

    Evaluation loops over the (few) elements, not over atoms: each element's
    atoms are picked with ``index_select`` and its outputs written back with
    ``index_copy`` (see ``benchmarks/models_micro.py`` for the comparison
    with stacked weights and ``torch.bmm``).

    Args: as :class:`AtomNetwork` (``elements``: one network each, sorted).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bodies = nn.ModuleList()
        self.outs = nn.ModuleList()
        for _ in self.elements:  # body, then output layer, per element: the seeded initial weights stay as they were
            self.bodies.append(self.new_body())
            out = nn.Linear(self.latent_size, 1)
            init_linear(out, self.initialization)
            self.outs.append(out)

    def _groups(self, numbers: torch.Tensor) -> list[torch.Tensor | None]:
        """Atom indices (n_k,) of each element (None when absent); InputError on an unknown element."""
        idx = self.element_slots(numbers, "BPNN")  # (N,)
        if len(self.elements) == 1:
            return [None]  # every atom: no gather needed
        order = torch.argsort(idx, stable=True)  # atoms grouped by element
        counts = torch.bincount(idx, minlength=len(self.elements)).tolist()
        return list(torch.split(order, counts))

    def forward_latent(self, x: torch.Tensor, numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, F), (N,) -> per-atom outputs (N,) and last hidden activations (N, H)."""
        groups = self._groups(numbers)
        if groups[0] is None:
            h = self.bodies[0](x)
            return self.outs[0](h).squeeze(-1), h
        n = x.shape[0]
        out = x.new_zeros((n,))
        lat = x.new_zeros((n, self.latent_size))
        for k, sel in enumerate(groups):
            if sel.numel() == 0:
                continue
            h = self.bodies[k](x.index_select(0, sel))  # (n_k, H)
            out = out.index_copy(0, sel, self.outs[k](h).squeeze(-1))
            lat = lat.index_copy(0, sel, h)
        return out, lat
