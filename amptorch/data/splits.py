"""Train / validation split of structure indices (the original's ``val_split`` and ``val_split_mode``)."""

from __future__ import annotations

import math

import numpy as np

from amptorch.errors import InputError

MODES = ("cv", "inorder", "random")


def train_val_split(
    n: int, val_split: float = 0.0, mode: str = "cv", seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation structures.

    Args:
        n: number of structures.
        val_split: fraction in [0, 1) for validation; ceil(val_split * n)
            structures are held out (0: no validation set).
        mode: "inorder" holds out the last structures; "cv" (the original's
            default name) and "random" hold out a random set drawn with ``seed``.
        seed: seed of the permutation (same seed, same split).

    Returns:
        ``(train_idx, val_idx)``: sorted int64 arrays, disjoint, together
        ``0 .. n-1``.

    Raises:
        InputError: naming ``val_split``, ``val_split_mode`` or ``n``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n: got {n!r}; expected a positive number of structures")
    n = int(n)
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float, np.number)):
        raise InputError(f"val_split: got {val_split!r}; expected a fraction in [0, 1)")
    frac = float(val_split)
    if not (math.isfinite(frac) and 0.0 <= frac < 1.0):
        raise InputError(f"val_split: got {val_split!r}; expected a fraction in [0, 1)")
    if mode not in MODES:
        raise InputError(f"val_split_mode: got {mode!r}; expected one of {', '.join(map(repr, MODES))}")
    n_val = math.ceil(frac * n - 1e-9) if frac > 0 else 0
    if n_val >= n:
        raise InputError(
            f"val_split: {frac} of {n} structures leaves none for training; expected a smaller fraction"
        )
    if mode == "inorder":
        order = np.arange(n, dtype=np.int64)
    else:
        order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    val = np.sort(order[n - n_val :]) if n_val else np.empty(0, dtype=np.int64)
    train = np.sort(order[: n - n_val])
    return train, val


__all__ = ["train_val_split", "MODES"]
