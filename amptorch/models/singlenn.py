"""SingleNN: one MLP shared by every element (Liu & Kitchin 2020)."""

from __future__ import annotations

import torch
from torch import nn

from amptorch.models.mlp import init_linear
from amptorch.models.network import AtomNetwork


class SingleNN(AtomNetwork):
    """One shared MLP for all elements; element identity enters through the features (GMP densities).

    Args:
        n_features, elements, hidden_layers, activation, batchnorm, dropout,
            dropout_rate, initialization: as :class:`AtomNetwork` (with
            ``element_outputs=False`` the elements do not change the parameters).
        element_outputs: give each element its own last linear layer
            (Liu & Kitchin 2020), picked per atom by a gather.
    """

    OPTIONS = (*AtomNetwork.OPTIONS, "element_outputs")

    def __init__(self, *args, element_outputs: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.element_outputs = bool(element_outputs)
        self.body = self.new_body()
        h = self.hidden_layers[-1]
        if self.element_outputs:
            n_el = len(self.elements)
            # same initial values as one nn.Linear(h, 1) per element
            weight = torch.empty(n_el, h)
            bias = torch.empty(n_el)
            for k in range(n_el):
                lin = nn.Linear(h, 1)
                init_linear(lin, self.initialization)
                weight[k] = lin.weight.data[0]
                bias[k] = lin.bias.data[0]
            self.out_weight = nn.Parameter(weight)  # (E, H)
            self.out_bias = nn.Parameter(bias)  # (E,)
        else:
            self.out = nn.Linear(h, 1)
            init_linear(self.out, self.initialization)

    def forward_latent(self, x: torch.Tensor, numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, F), (N,) -> per-atom outputs (N,) and last hidden activations (N, H)."""
        h = self.body(x)  # (N, H)
        if not self.element_outputs:
            return self.out(h).squeeze(-1), h
        idx = self.element_slots(numbers, "SingleNN (element_outputs=True)")  # (N,)
        w = self.out_weight.index_select(0, idx)  # (N, H)
        b = self.out_bias.index_select(0, idx)  # (N,)
        return (h * w).sum(-1) + b, h
