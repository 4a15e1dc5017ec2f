"""The original AmpTorch's import path ``from amptorch.model import BPNN, SingleNN, CustomLoss``.

Thin adapters over our objects (nothing is implemented twice):

* ``BPNN`` / ``SingleNN`` take the original's constructor arguments
  (``elements, input_dim, num_nodes, num_layers, hidden_layers, batchnorm,
  dropout, dropout_rate, activation, initialization``; ``get_forces`` and
  ``name`` are accepted and ignored) and are our networks
  (:class:`amptorch.models.BPNN` / :class:`amptorch.models.SingleNN`).
  Differences: ``forward(x, numbers)`` maps scaled features (N, F) and atomic
  numbers (N,) to per-atom outputs (N,), not a torch_geometric batch to
  (energies, forces); forces come from :class:`amptorch.models.AtomisticModel`,
  which holds the network with the scaler tables and the energy baseline.
* ``CustomLoss`` is our loss (:class:`amptorch.train.net.AtomsLoss`) with the
  original's ``CustomLoss(force_coefficient=0, loss="mse")`` signature;
  ``optim.loss_fn: CustomLoss`` selects the built-in loss, per-atom energy
  and forces in units of the energy baseline's scale.
"""

from __future__ import annotations

from collections.abc import Sequence

from amptorch.models import BPNN as _BPNN
from amptorch.models import SingleNN as _SingleNN
from amptorch.train.net import AtomsLoss


def _numbers(elements: Sequence) -> list[int]:
    """Atomic numbers from symbols or numbers (the original passed either)."""
    from amptorch.descriptors.densities import element_number

    return [element_number(e, "elements") for e in elements]


def _network_args(elements, input_dim, num_nodes, num_layers, hidden_layers, **kwargs) -> dict:
    kwargs.pop("get_forces", None)  # forces come from AtomisticModel, by autograd
    kwargs.pop("name", None)  # config["model"] is passed whole by the original
    widths = list(hidden_layers) if hidden_layers else [int(num_nodes)] * int(num_layers)
    return {"n_features": int(input_dim), "elements": _numbers(elements), "hidden_layers": widths, **kwargs}


class BPNN(_BPNN):
    """:class:`amptorch.models.BPNN` (one MLP per element) with the original's constructor."""

    def __init__(self, elements, input_dim, num_nodes=20, num_layers=5, hidden_layers=None, **kwargs):
        super().__init__(**_network_args(elements, input_dim, num_nodes, num_layers, hidden_layers, **kwargs))

    @property
    def num_params(self) -> int:
        """The number of trainable parameters (the original's attribute)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class SingleNN(_SingleNN):
    """:class:`amptorch.models.SingleNN` (one MLP for all elements) with the original's constructor."""

    def __init__(self, elements, input_dim, num_nodes=20, num_layers=5, hidden_layers=None, **kwargs):
        super().__init__(**_network_args(elements, input_dim, num_nodes, num_layers, hidden_layers, **kwargs))

    num_params = BPNN.num_params


class CustomLoss(AtomsLoss):
    """Our loss (:class:`amptorch.train.net.AtomsLoss`) with the original's ``CustomLoss`` signature.

    Called as ``loss(prediction, batch)`` with the model's output dict and a
    :class:`amptorch.data.Batch`. Energies enter per atom; the original's
    ``0.5 * (L_E + force_coefficient * L_F)`` on standardized totals differs.
    """

    def __init__(self, force_coefficient: float = 0.0, loss: str = "mse", energy_scale: float = 1.0):
        super().__init__(force_coefficient=force_coefficient, kind=loss, energy_scale=energy_scale)


__all__ = ["BPNN", "SingleNN", "CustomLoss"]
