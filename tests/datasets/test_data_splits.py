"""train_val_split: deterministic, disjoint, covering."""

from __future__ import annotations

import numpy as np
import pytest

from amptorch import InputError
from amptorch.data import train_val_split


@pytest.mark.parametrize("mode", ["cv", "random", "inorder"])
def test_disjoint_covering(mode):
    tr, va = train_val_split(50, 0.2, mode, seed=7)
    assert len(va) == 10 and len(tr) == 40
    assert not set(tr) & set(va)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(50))
    tr2, va2 = train_val_split(50, 0.2, mode, seed=7)
    np.testing.assert_array_equal(va, va2)


def test_modes_and_seeds():
    _, va = train_val_split(20, 0.25, "inorder")
    np.testing.assert_array_equal(va, np.arange(15, 20))
    a = train_val_split(100, 0.1, "cv", seed=1)[1]
    b = train_val_split(100, 0.1, "cv", seed=2)[1]
    assert not np.array_equal(a, b)
    tr, va = train_val_split(5, 0)
    assert len(va) == 0 and tr.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "args, pattern",
    [
        ((10, 1.0, "cv"), "val_split: got 1.0"),
        ((10, -0.1, "cv"), "val_split: got -0.1"),
        ((10, "0.1", "cv"), "val_split: got '0.1'"),
        ((10, 0.1, "kfold"), "val_split_mode: got 'kfold'"),
        ((0, 0.1, "cv"), "n: got 0"),
        ((1, 0.5, "cv"), "leaves none for training"),
    ],
)
def test_errors(args, pattern):
    with pytest.raises(InputError, match=pattern):
        train_val_split(*args)
