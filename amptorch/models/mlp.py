"""Multilayer perceptrons and activation names."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

from torch import nn

from amptorch.errors import InputError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "celu": nn.CELU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
}
INITIALIZATIONS = ("xavier", "zero", "kaiming", "default")

# the original's default network: 5 hidden layers of 20 nodes
DEFAULT_LAYERS = 5
DEFAULT_NODES = 20
DEFAULT_HIDDEN = (DEFAULT_NODES,) * DEFAULT_LAYERS


def nearest(name: str, valid: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or ''."""
    hit = difflib.get_close_matches(str(name).lower(), list(valid), n=1, cutoff=0.4)
    return f" (did you mean {hit[0]!r}?)" if hit else ""


def resolve_activation(a: str | type[nn.Module] | nn.Module):
    """A zero-argument factory of activation modules.

    Args:
        a: a name (case-insensitive: tanh, relu, silu/swish, gelu, softplus,
            celu, elu, sigmoid), a torch.nn module class (``torch.nn.Tanh``, as
            the original passes) or a module instance (reused in every layer).

    Returns:
        Callable returning a fresh nn.Module (or the given instance).
    """
    if isinstance(a, str):
        cls = ACTIVATIONS.get(a.strip().lower())
        if cls is None:
            raise InputError(
                f"activation: unknown name {a!r}{nearest(a, ACTIVATIONS)}; "
                f"expected one of {sorted(ACTIVATIONS)}"
            )
        return cls
    if isinstance(a, type) and issubclass(a, nn.Module):
        return a
    if isinstance(a, nn.Module):
        return lambda: a
    raise InputError(
        f"activation: got {a!r}; expected a name {sorted(ACTIVATIONS)} or a torch.nn module class or instance"
    )


def check_hidden(hidden: Sequence[int], name: str = "hidden_layers") -> list[int]:
    """Validate a list of hidden-layer widths."""
    if isinstance(hidden, (int, str)) or hidden is None:
        raise InputError(f"{name}: got {hidden!r}; expected a list of positive layer widths, e.g. [20, 20]")
    out = []
    for h in hidden:
        if isinstance(h, bool) or not isinstance(h, (int,)) and not (isinstance(h, float) and h.is_integer()):
            raise InputError(f"{name}: width {h!r} is not an integer")
        if int(h) < 1:
            raise InputError(f"{name}: width {h!r}; expected >= 1")
        out.append(int(h))
    if not out:
        raise InputError(f"{name}: empty; expected at least one hidden layer")
    return out


def init_linear(layer: nn.Linear, initialization: str) -> None:
    """Initialise one Linear layer in place ("xavier": uniform weights, zero bias, as the original)."""
    if initialization == "xavier":
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    elif initialization == "zero":
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    elif initialization == "kaiming":
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    elif initialization == "default":
        layer.reset_parameters()
    else:
        raise InputError(
            f"initialization: got {initialization!r}{nearest(initialization, INITIALIZATIONS)}; "
            f"expected one of {list(INITIALIZATIONS)}"
        )


def check_options(initialization: str, dropout_rate: float) -> None:
    if initialization not in INITIALIZATIONS:
        raise InputError(
            f"initialization: got {initialization!r}{nearest(initialization, INITIALIZATIONS)}; "
            f"expected one of {list(INITIALIZATIONS)}"
        )
    if not (isinstance(dropout_rate, (int, float)) and 0 <= dropout_rate < 1 and math.isfinite(dropout_rate)):
        raise InputError(f"dropout_rate: got {dropout_rate!r}; expected 0 <= rate < 1")


def build_body(
    n_in: int,
    hidden: Sequence[int],
    activation="tanh",
    batchnorm: bool = False,
    dropout: bool = False,
    dropout_rate: float = 0.5,
    initialization: str = "xavier",
) -> nn.Sequential:
    """Hidden layers only: [Linear (BatchNorm) act (Dropout)] x len(hidden); (N, n_in) -> (N, hidden[-1])."""
    hidden = check_hidden(hidden)
    check_options(initialization, dropout_rate)
    act = resolve_activation(activation)
    layers: list[nn.Module] = []
    width = int(n_in)
    for h in hidden:
        lin = nn.Linear(width, h)
        init_linear(lin, initialization)
        layers.append(lin)
        if batchnorm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(act())
        if dropout:
            layers.append(nn.Dropout(dropout_rate))
        width = h
    return nn.Sequential(*layers)


def build_mlp(
    n_in: int,
    hidden: Sequence[int],
    n_out: int = 1,
    activation="tanh",
    batchnorm: bool = False,
    dropout: bool = False,
    dropout_rate: float = 0.5,
    initialization: str = "xavier",
) -> nn.Sequential:
    """A per-atom MLP ``[n_in] + hidden + [n_out]`` (linear output layer).

    Args:
        n_in: input width (features F).
        hidden: hidden widths, e.g. [20] * 5.
        n_out: output width.
        activation: see :func:`resolve_activation`.
        batchnorm: BatchNorm1d after each hidden Linear (before the activation).
        dropout, dropout_rate: Dropout after each hidden activation.
        initialization: "xavier" (xavier_uniform weights, zero bias, the
            original's default), "zero", "kaiming" (kaiming_uniform, zero bias)
            or "default" (torch's).

    Returns:
        nn.Sequential mapping (N, n_in) -> (N, n_out).
    """
    if not (isinstance(n_in, int) and n_in >= 1):
        raise InputError(f"n_features: got {n_in!r}; expected a positive integer")
    body = build_body(n_in, hidden, activation, batchnorm, dropout, dropout_rate, initialization)
    last = nn.Linear(check_hidden(hidden)[-1], int(n_out))
    init_linear(last, initialization)
    return nn.Sequential(*body, last)
