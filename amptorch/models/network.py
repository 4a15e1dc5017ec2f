"""What SingleNN and BPNN share: their options and checks, the element index, and the forward contract.

A network maps scaled features x (N, F) and atomic numbers (N,) to per-atom
outputs (N,) (dimensionless; AtomisticModel scales them to eV) and the last
hidden activations (N, H) (``forward_latent``; uncertainty methods read them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from amptorch.descriptors.record import N_Z
from amptorch.errors import InputError
from amptorch.models.mlp import DEFAULT_HIDDEN, build_body, check_hidden


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


class AtomNetwork(nn.Module):
    """Base of the per-atom networks.

    Args:
        n_features: F, the input width.
        elements: atomic numbers the model is meant for.
        hidden_layers: hidden widths (default: the original's 5 x 20).
        activation, batchnorm, dropout, dropout_rate, initialization: of every
            hidden block, see :func:`amptorch.models.mlp.build_mlp`.

    Subclasses build their layers after ``super().__init__`` with
    :meth:`new_body`, and implement ``forward_latent``. ``OPTIONS`` names the
    keyword arguments ``build_model`` accepts for them.
    """

    OPTIONS: tuple[str, ...] = ("hidden_layers", "activation", "batchnorm", "dropout", "dropout_rate",
                                "initialization")  # fmt: skip

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
        self.initialization = initialization
        self._body_options = (activation, batchnorm, dropout, dropout_rate, initialization)
        self.register_buffer("element_index", element_index_table(self.elements), persistent=False)

    @property
    def latent_size(self) -> int:
        """H, the width of the last hidden layer."""
        return self.hidden_layers[-1]

    def new_body(self) -> nn.Module:
        """A freshly initialized stack of hidden layers F -> H with this network's options."""
        return build_body(self.n_features, self.hidden_layers, *self._body_options)

    def element_slots(self, numbers: torch.Tensor, what: str) -> torch.Tensor:
        """(N,) position of each atom's element in ``elements``; InputError naming ``what`` for one outside it."""
        idx = self.element_index.index_select(0, numbers)  # (N,)
        if bool((idx < 0).any()):
            bad = sorted({int(z) for z in numbers[idx < 0].tolist()})
            raise InputError(
                f"numbers: element(s) Z={bad} not in the {what} model's elements {self.elements}; "
                "the model has no network for them"
            )
        return idx

    def forward_latent(self, x: torch.Tensor, numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, F) scaled features, (N,) Z -> per-atom outputs (N,) and last hidden activations (N, H)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """Per-atom outputs (N,) (dimensionless) from scaled features x (N, F) and atomic numbers (N,)."""
        return self.forward_latent(x, numbers)[0]


__all__ = ["AtomNetwork", "check_elements", "element_index_table"]
