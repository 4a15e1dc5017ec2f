"""SingleNN: one MLP shared by every element (Liu & Kitchin 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from amptorch.descriptors.record import N_Z
from amptorch.errors import InputError
from amptorch.models.mlp import DEFAULT_HIDDEN, build_body, check_hidden, init_linear


def check_elements(elements: Sequence[int]) -> list[int]:
    """Validate a list of atomic numbers (unique, 1..118); returned sorted."""
    if isinstance(elements, (int, str)) or elements is None:
        raise InputError(f"elements: got {elements!r}; expected a list of atomic numbers, e.g. [1, 8]")
    out = []
    for z in elements:
        if isinstance(z, bool) or not isinstance(z, (int,)) and not (hasattr(z, "__index__")):
            raise InputError(f"elements: {z!r} is not an atomic number (int 1..118)")
        z = int(z)
        if not 1 <= z < N_Z:
            raise InputError(f"elements: {z} is not an atomic number (1..118)")
        out.append(z)
    if not out:
        raise InputError("elements: empty; expected the atomic numbers the model will see")
    return sorted(set(out))


def element_index_table(elements: list[int]) -> torch.Tensor:
    """(119,) long: position of Z in ``elements``, -1 where absent."""
    table = torch.full((N_Z,), -1, dtype=torch.long)
    table[torch.tensor(elements, dtype=torch.long)] = torch.arange(len(elements))
    return table


def unknown_element_error(
    numbers: torch.Tensor, idx: torch.Tensor, elements: list[int], model: str
) -> InputError:
    bad = sorted({int(z) for z in numbers[idx < 0].tolist()})
    return InputError(
        f"numbers: element(s) Z={bad} not in the {model} model's elements {elements}; "
        "the model has no network for them"
    )


class SingleNN(nn.Module):
    """One shared MLP for all elements; element identity enters through the features (GMP densities).

    Args:
        n_features: F, the input width.
        elements: atomic numbers the model is meant for; with
            ``element_outputs=False`` they do not change the parameters.
        hidden_layers: hidden widths, default [20] * 5.
        activation, batchnorm, dropout, dropout_rate, initialization: see
            :func:`amptorch.models.mlp.build_mlp`.
        element_outputs: give each element its own last linear layer
            (Liu & Kitchin 2020), picked per atom by a gather.
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
        element_outputs: bool = False,
    ):
        super().__init__()
        if not (isinstance(n_features, int) and n_features >= 1):
            raise InputError(f"n_features: got {n_features!r}; expected a positive integer")
        self.n_features = n_features
        self.elements = check_elements(elements)
        self.hidden_layers = check_hidden(hidden_layers)
        self.element_outputs = bool(element_outputs)
        self.body = build_body(
            n_features, self.hidden_layers, activation, batchnorm, dropout, dropout_rate, initialization
        )
        h = self.hidden_layers[-1]
        if self.element_outputs:
            n_el = len(self.elements)
            # same initial values as one nn.Linear(h, 1) per element
            weight = torch.empty(n_el, h)
            bias = torch.empty(n_el)
            for k in range(n_el):
                lin = nn.Linear(h, 1)
                init_linear(lin, initialization)
                weight[k] = lin.weight.data[0]
                bias[k] = lin.bias.data[0]
            self.out_weight = nn.Parameter(weight)  # (E, H)
            self.out_bias = nn.Parameter(bias)  # (E,)
            self.register_buffer("element_index", element_index_table(self.elements), persistent=False)
        else:
            self.out = nn.Linear(h, 1)
            init_linear(self.out, initialization)

    @property
    def latent_size(self) -> int:
        return self.hidden_layers[-1]

    def forward_latent(self, x: torch.Tensor, numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, F), (N,) -> per-atom outputs (N,) and last hidden activations (N, H)."""
        h = self.body(x)  # (N, H)
        if not self.element_outputs:
            return self.out(h).squeeze(-1), h
        idx = self.element_index.index_select(0, numbers)  # (N,)
        if bool((idx < 0).any()):
            raise unknown_element_error(numbers, idx, self.elements, "SingleNN (element_outputs=True)")
        w = self.out_weight.index_select(0, idx)  # (N, H)
        b = self.out_bias.index_select(0, idx)  # (N,)
        return (h * w).sum(-1) + b, h

    def forward(self, x: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """Per-atom outputs (N,) (dimensionless) from scaled features x (N, F) and atomic numbers (N,)."""
        return self.forward_latent(x, numbers)[0]
