"""MemberMean: the per-atom network of a deep ensemble's prediction, the mean of M member networks.

Mean energies give mean forces and stress (both are linear in the energy), so an AtomisticModel over a
MemberMean predicts what the ensemble was trained to predict through the one autograd path (and the
calculator's fused path) of a single network. The members' spread is the uncertainty methods' business
(``amptorch.uq.Ensemble``, one vmapped pass); this module only averages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from amptorch.errors import InputError


class MemberMean(nn.Module):
    """Per-atom outputs averaged over member networks of one architecture (SingleNN or BPNN).

    Args:
        networks: M ≥ 1 members with the same ``n_features``, ``elements`` and hidden layers. They are held,
            not copied: moving the MemberMean moves them.

    ``forward_latent`` returns the mean output (N,) and member 0's last hidden activations (N, H): the
    latent-distance method stores the training latents of member 0 (the checkpoint's ``model.pt``).
    """

    def __init__(self, networks: Sequence[nn.Module]):
        super().__init__()
        networks = list(networks)
        if not networks:
            raise InputError("MemberMean: no member networks; expected at least one")
        first = networks[0]
        for m, net in enumerate(networks[1:], 1):
            if (net.n_features, list(net.elements), list(net.hidden_layers)) != (
                first.n_features, list(first.elements), list(first.hidden_layers)
            ):
                raise InputError(f"MemberMean: member {m} differs from member 0 in features, elements or layers")
        self.members = nn.ModuleList(networks)
        self.n_features = first.n_features
        self.elements = list(first.elements)
        self.hidden_layers = list(first.hidden_layers)

    @property
    def latent_size(self) -> int:
        return self.hidden_layers[-1]

    def forward_latent(self, x: torch.Tensor, numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, F) scaled features, (N,) Z -> the members' mean output (N,) and member 0's latent (N, H)."""
        out, latent = self.members[0].forward_latent(x, numbers)
        for net in self.members[1:]:
            out = out + net.forward_latent(x, numbers)[0]
        return out / len(self.members), latent

    def forward(self, x: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        return self.forward_latent(x, numbers)[0]


__all__ = ["MemberMean"]
