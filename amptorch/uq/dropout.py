"""MC dropout (Gal & Ghahramani 2016): dropout kept active at inference, T samples in one batched pass.

The features are repeated T times along the atom axis, (T·N, F), and pass the
network once with its ``nn.Dropout`` layers in training mode (every other
layer, batch norm included, stays in eval mode), so each copy draws its own
masks. The prediction stays the plain model's deterministic pass (dropout
off, weights as trained); σ is the spread of the T samples.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from amptorch.errors import InputError
from amptorch.uq.base import SamplingMethod

DEFAULT_SAMPLES = 20


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The model's dropout modules (nn.Dropout and its variants)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


@contextmanager
def active_dropout(model: nn.Module):
    """Dropout layers in training mode for the block; everything back in eval mode afterwards."""
    layers = dropout_layers(model)
    model.eval()
    try:
        for m in layers:
            m.train(True)
        yield layers
    finally:
        model.eval()


class MCDropout(SamplingMethod):
    """T stochastic passes of a network trained with dropout, as one batched pass.

    Args:
        samples: T (≥ 2).
        seed: seed of the dropout masks (None: torch's global stream), so repeated calls can be reproduced.
    """

    name = "dropout"

    def __init__(self, samples: int = DEFAULT_SAMPLES, seed: int | None = None):
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
            raise InputError(f"dropout_samples: got {samples!r}; expected an integer ≥ 2")
        self.T = int(samples)
        self.seed = seed

    @property
    def samples(self) -> int:
        return self.T

    def check(self, potential) -> None:
        if not dropout_layers(potential.model):
            raise InputError(
                "uncertainty 'dropout': the checkpoint's network has no dropout layers; expected a model trained "
                "with model.dropout: true (dropout_rate > 0)"
            )

    def sample_energies(self, model, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """(T, N) per-atom energies (eV) from raw features (T, N, F), dropout active, one network pass."""
        T, N, F = features.shape
        # a seeded call leaves the caller's random stream as it was
        devices = [features.device] if features.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=self.seed is not None):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            with active_dropout(model):
                energies, _ = model.atomic_energies(features.reshape(T * N, F), numbers.repeat(T))
        return energies.reshape(T, N)


__all__ = ["DEFAULT_SAMPLES", "MCDropout", "active_dropout", "dropout_layers"]
