"""Descriptor parameter checks that used to disagree (descriptors/base.py, gmp.py): bools are not
numbers, numpy integers are, duplicates are named, sigmas too narrow for the default cutoff rule are
refused with a message about sigma."""

from __future__ import annotations

import numpy as np
import pytest

from amptorch.descriptors.base import as_float_list, check_cutoff
from amptorch.descriptors.gmp import GMP, SMOOTH_CUTOFFS
from amptorch.errors import InputError

from .conftest import one_line


def gmp(**kw):
    kw.setdefault("smooth_cutoff", "cosine")
    return GMP(**kw)


@pytest.mark.parametrize(
    "kw, parts",
    [
        ({"orders": [True], "sigmas": [1.0]}, ("orders", "got True", "integers 0..9")),
        ({"orders": [0, np.bool_(True)], "sigmas": [1.0]}, ("orders", "True", "integers")),
        ({"orders": True, "sigmas": [1.0]}, ("orders", "got True")),
        ({"orders": [1, 2, 1], "sigmas": [1.0]}, ("orders", "order 1 is given twice")),
        ({"orders": [0], "sigmas": [0.5, 1.0, 0.5]}, ("sigmas", "width 0.5 is given twice")),
        ({"orders": [0], "sigmas": [1e-6]}, ("sigmas", "1e-06", "at least 0.01 Å")),
        ({"orders": [0], "sigmas": [True]}, ("sigmas", "not true/false")),
        ({"orders": [0], "sigmas": [1.0], "cutoff": True}, ("cutoff", "got True", "positive number")),
        ({"orders": [0], "sigmas": [1.0], "cutoff": np.bool_(True)}, ("cutoff",)),
        ({"probes": [(0, 1.0), (0, 1.0)]}, ("probes", "(0, 1.0) is given twice")),
        ({"probes": [(2, True, 1.0)]}, ("groups", "True")),
    ],
)
def test_refused(kw, parts):
    with pytest.raises(InputError) as info:
        gmp(**kw)
    one_line(info.value, *parts)


def test_tiny_sigma_is_not_reported_as_a_zero_cutoff():
    """sigma = 1e-6 used to say "cutoff: got 0.0" (the default cutoff rule rounded to 0)."""
    with pytest.raises(InputError) as info:
        gmp(orders=[0], sigmas=[0.5, 1e-6])
    assert info.value.path == "sigmas" and "cutoff" not in str(info.value)
    # the narrowest accepted width still gets a positive default cutoff
    assert gmp(orders=[0], sigmas=[0.01]).cutoff > 0


def test_numpy_numbers_are_accepted():
    g = gmp(orders=np.array([0, 2]), sigmas=np.array([0.5, 1.0]), cutoff=np.int64(5))
    assert g.cutoff == 5.0 and isinstance(g.cutoff, float)
    assert [p[0] for p in g.probes] == [0, 0, 2, 2] and all(type(p[0]) is int for p in g.probes)
    g = gmp(orders=[np.int64(1), np.int32(3)], sigmas=[np.float32(0.5)], cutoff=np.float64(6.0))
    assert g.cutoff == 6.0
    assert gmp(orders=2, sigmas=0.5, cutoff=6).cutoff == 6.0


def test_check_cutoff_and_float_lists():
    assert check_cutoff(np.int64(5), None, 2.0, SMOOTH_CUTOFFS) == (5.0, 2.0)
    for bad in (True, np.bool_(True), np.nan, np.inf, -1.0, 0, "5"):
        with pytest.raises(InputError) as info:
            check_cutoff(bad, None, 2.0, SMOOTH_CUTOFFS)
        one_line(info.value, "cutoff:", "expected a positive number of Å")
    assert as_float_list(np.array([1, 2]), "x") == [1.0, 2.0]
    assert as_float_list(3, "x") == [3.0]
    for bad in ([True, 1.0], np.array([False]), [[1.0, 2.0], [3.0]], [np.nan]):
        with pytest.raises(InputError) as info:
            as_float_list(bad, "MCSHs.sigmas")
        one_line(info.value, "MCSHs.sigmas:")
