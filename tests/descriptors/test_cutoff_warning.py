"""A hard GMP cutoff that truncates the widest probe Gaussian above 1e-6 of its peak warns, once per setting."""

from __future__ import annotations

import math
import warnings

import pytest

from amptorch.descriptors import GMP, default_cutoff, from_settings
from amptorch.descriptors import gmp as gmp_module


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Each test starts with no setting warned about yet (the registry is per process)."""
    monkeypatch.setattr(gmp_module, "_WARNED_HARD_CUTOFFS", set())


def hard_cutoff_warnings(make) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
    return [str(w.message) for w in caught if "hard cutoff" in str(w.message)]


def test_short_hard_cutoff_warns_with_the_cutoff_that_would_not():
    with pytest.warns(UserWarning, match="hard cutoff") as record:
        GMP(sigmas=[1.4], cutoff=6)
    (msg,) = [str(w.message) for w in record]
    # exp(-r^2 / (2 * 1.4^2)) = 1e-6 at r = 1.4 sqrt(2 ln 1e6) = 7.3592 Å, rounded up
    assert "6 Å" in msg and "sigma 1.4 Å" in msg and "7.36 Å" in msg
    assert 'smooth_cutoff="cosine"' in msg and "MD conserves energy" in msg
    assert 1.4 * math.sqrt(2 * math.log(1e6)) == pytest.approx(7.3592, abs=1e-4)


def test_warns_once_per_setting():
    assert len(hard_cutoff_warnings(lambda: GMP(sigmas=[1.4], cutoff=6))) == 1
    assert hard_cutoff_warnings(lambda: GMP(sigmas=[1.4], cutoff=6)) == []
    # the same setting rebuilt from its settings (a checkpoint) does not warn again
    assert hard_cutoff_warnings(lambda: from_settings(GMP(sigmas=[1.4], cutoff=6).settings())) == []
    # a different setting warns once more
    assert len(hard_cutoff_warnings(lambda: GMP(sigmas=[0.5, 1.4], cutoff=5))) == 1
    assert len(hard_cutoff_warnings(lambda: GMP(sigmas=[1.6], cutoff=6))) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sigmas=[1.4], cutoff=6, smooth_cutoff="cosine"),
        dict(sigmas=[1.4], cutoff=6, smooth_cutoff="polynomial"),
        dict(sigmas=[1.4]),  # the default cutoff
        dict(),  # every default
        dict(sigmas=[1.4], cutoff=7.36),  # long enough
        dict(sigmas=[0.2, 0.69, 1.1, 1.66, 2.66], cutoff=default_cutoff(2.66)),
    ],
    ids=["cosine", "polynomial", "default_cutoff", "defaults", "long_enough", "explicit_default"],
)
def test_no_warning(kwargs):
    assert hard_cutoff_warnings(lambda: GMP(**kwargs)) == []


def test_no_warning_from_amptorch_with_smooth_cutoff():
    params = {"MCSHs": {"orders": [0, 1], "sigmas": [0.4, 2.0]}, "cutoff": 7.0}
    assert hard_cutoff_warnings(lambda: GMP.from_amptorch({**params, "smooth_cutoff": "cosine"})) == []
    assert len(hard_cutoff_warnings(lambda: GMP.from_amptorch(params))) == 1


def test_default_cutoff_never_warns():
    for sigma in (0.05, 0.3, 1.0, 2.66, 5.0, 12.0, 40.0, 100.0):
        assert hard_cutoff_warnings(lambda s=sigma: GMP(sigmas=[s])) == [], sigma
        assert hard_cutoff_warnings(lambda s=sigma: GMP(sigmas=[s], cutoff=default_cutoff(s))) == [], sigma
