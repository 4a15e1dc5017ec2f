"""BPNN: one MLP per element (Behler & Parrinello 2007)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from amptorch.errors import InputError
from amptorch.models.mlp import DEFAULT_HIDDEN, build_body, check_hidden, init_linear
from amptorch.models.singlenn import check_elements, element_index_table, unknown_element_error


class BPNN(nn.Module):
    """One MLP per element, applied to that element's atoms.

    Evaluation loops over the (few) elements, not over atoms: each element's
    atoms are picked with ``index_select`` and its outputs written back with
    ``index_copy`` (see ``benchmarks/models_micro.py`` for the comparison
    with stacked weights and ``torch.bmm``).

    Args:
        n_features: F, the input width.
        elements: atomic numbers, one network each (sorted).
        hidden_layers, activation, batchnorm, dropout, dropout_rate,
        initialization: as :class:`amptorch.models.SingleNN`.
    """

    def __init__(
        self,
        n_features: int,
        elements: Sequence[int],
        hidden_layers: Sequence[int] = DEFAULT_HIDDEN,
        activation="tanh",
        batchnorm: bool = False,
        dropout: bool = False,
        dropout_rate: float = 0.5,
        initialization: str = "xavier",
    ):
        super().__init__()
        if not (isinstance(n_features, int) and n_features >= 1):
            raise InputError(f"n_features: got {n_features!r}; expected a positive integer")
        self.n_features = n_features
        self.elements = check_elements(elements)
        self.hidden_layers = check_hidden(hidden_layers)
        self.bodies = nn.ModuleList()
        self.outs = nn.ModuleList()
        for _ in self.elements:
            self.bodies.append(
                build_body(
                    n_features,
                    self.hidden_layers,
                    activation,
                    batchnorm,
                    dropout,
                    dropout_rate,
                    initialization,
                )
            )
            out = nn.Linear(self.hidden_layers[-1], 1)
            init_linear(out, initialization)
            self.outs.append(out)
        self.register_buffer("element_index", element_index_table(self.elements), persistent=False)

    @property
    def latent_size(self) -> int:
        return self.hidden_layers[-1]

    def _groups(self, numbers: torch.Tensor) -> list[torch.Tensor | None]:
        """Atom indices (n_k,) of each element (None when absent); InputError on an unknown element."""
        idx = self.element_index.index_select(0, numbers)  # (N,)
        if bool((idx < 0).any()):
            raise unknown_element_error(numbers, idx, self.elements, "BPNN")
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

    def forward(self, x: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """Per-atom outputs (N,) from scaled features x (N, F) and atomic numbers (N,)."""
        return self.forward_latent(x, numbers)[0]
