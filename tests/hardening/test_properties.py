"""Property-based tests (hypothesis): random structures and cutoffs through GMP and GaussianSF, random
configs through ``validate_config``. Every input either gives a finite answer that passes the invariance
checks (translation; wrapping into periodic cells) or one ``InputError`` line, within a time bound.

The default run draws a few examples per property (a few seconds); ``-m slow`` runs many more.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amptorch.descriptors import GMP, GaussianSF
from amptorch.errors import InputError

ELEMENTS = ["H", "C", "O", "Cu", "Pt"]
FAST = settings(max_examples=40, deadline=timedelta(seconds=10), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
SLOW = settings(max_examples=300, deadline=timedelta(seconds=10), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def structures(draw) -> Atoms:
    """Random cells (skewed; sometimes nearly flat), pbc per axis, elements, atom counts and distances."""
    n = draw(st.integers(1, 6))
    lengths = [draw(st.floats(1.0, 12.0)) for _ in range(3)]
    if draw(st.booleans()) and draw(st.booleans()):  # a nearly flat cell (1 in 4)
        lengths[2] = draw(st.sampled_from([1e-6, 1e-3, 0.05, 0.2, 0.5]))
    cell = np.diag(lengths)
    for i, j in ((1, 0), (2, 0), (2, 1)):  # skew: lower-triangular shear up to 0.9 of the row's length
        cell[i, j] = draw(st.floats(-0.9, 0.9)) * lengths[i]
    pbc = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    frac = np.array([[draw(st.floats(0.0, 1.0, exclude_max=True)) for _ in range(3)] for _ in range(n)])
    scale = draw(st.sampled_from([1.0, 1.0, 0.05, 3.0]))  # sometimes atoms very close, sometimes spread out
    positions = frac @ cell * scale
    numbers = draw(st.lists(st.sampled_from(ELEMENTS), min_size=n, max_size=n))
    return Atoms(numbers, positions=positions, cell=cell, pbc=pbc)


def features_or_error(descriptor, atoms: Atoms):
    """The features (finite), or None after checking the error is one InputError line."""
    try:
        rec = descriptor.compute(atoms, derivatives=True)
    except InputError as err:
        assert "\n" not in str(err) and str(err), str(err)
        return None
    assert np.isfinite(rec.features).all()
    if rec.dfeat is not None:
        assert np.isfinite(rec.dfeat).all()
    return rec.features


def check_descriptor(descriptor, atoms: Atoms, shift: np.ndarray) -> None:
    ref = features_or_error(descriptor, atoms)
    if ref is None:
        return
    tol = dict(rtol=1e-7, atol=1e-9 * max(1.0, float(np.abs(ref).max())))
    moved = atoms.copy()
    moved.positions += shift
    np.testing.assert_allclose(features_or_error(descriptor, moved), ref, **tol)
    if atoms.pbc.any():
        wrapped = moved.copy()
        wrapped.wrap()  # along the periodic axes only
        np.testing.assert_allclose(features_or_error(descriptor, wrapped), ref, **tol)


def gmp(cutoff: float) -> GMP:
    return GMP(orders=[0, 1, 2], sigmas=[0.4, 1.0], cutoff=cutoff, smooth_cutoff="cosine")


def gsf(cutoff: float) -> GaussianSF:
    return GaussianSF(ELEMENTS, g2=[(0.05, 0.0), (1.0, 1.0)], g4=[(0.01, 1.0, 1.0), (0.01, 2.0, -1.0)], cutoff=cutoff)


shifts = st.tuples(*[st.floats(-7.0, 7.0)] * 3).map(np.array)
cutoffs = st.floats(1.0, 8.0)


@FAST
@given(structures(), cutoffs, shifts)
def test_gmp_random_structures(atoms, cutoff, shift):
    check_descriptor(gmp(cutoff), atoms, shift)


@FAST
@given(structures(), cutoffs, shifts)
def test_gsf_random_structures(atoms, cutoff, shift):
    check_descriptor(gsf(cutoff), atoms, shift)


@pytest.mark.slow
@SLOW
@given(structures(), cutoffs, shifts)
def test_gmp_random_structures_many(atoms, cutoff, shift):
    check_descriptor(gmp(cutoff), atoms, shift)


@pytest.mark.slow
@SLOW
@given(structures(), cutoffs, shifts)
def test_gsf_random_structures_many(atoms, cutoff, shift):
    check_descriptor(gsf(cutoff), atoms, shift)


# ------------------------------------------------------------------- configs


def _sections() -> dict[str, list[str]]:
    from amptorch.train.config import Config

    out = {}
    for name, field in Config.model_fields.items():
        out[name] = sorted(field.annotation.model_fields)
    return out


values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.sampled_from(["mse", "mae", "cosine", "adam", "cpu", "float32", "singlenn", "bpnn",
                                          "gmpordernorm", "random", "no", "full", "tanh", "./runs", "../x"]),
    st.lists(st.one_of(st.integers(-2, 64), st.text(max_size=3), finite), max_size=3),
    st.dictionaries(st.sampled_from(["type", "range", "elementwise", "cutoff", "MCSHs", "lr", "x"]),
                    st.one_of(st.integers(-2, 8), finite, st.text(max_size=3)), max_size=3),
)  # fmt: skip


@st.composite
def configs(draw) -> dict:
    sections = _sections()
    cfg: dict = {}
    for name in draw(st.lists(st.sampled_from(sorted(sections)), unique=True)):
        keys = draw(st.lists(st.sampled_from(sections[name]), unique=True, max_size=4))
        section = {k: draw(values) for k in keys}
        if draw(st.integers(0, 9)) == 0:
            # sometimes an unknown key, control characters included (the formatter quotes those)
            section[draw(st.text(min_size=1, max_size=5))] = draw(values)
        cfg[name] = section if draw(st.integers(0, 19)) else draw(values)  # sometimes not a mapping at all
    return cfg


def check_config(cfg: dict) -> None:
    from amptorch.train import validate_config

    try:
        validate_config(cfg)
    except InputError as err:
        text = str(err)
        assert text, cfg
        # one line (the first problems named on it), naming its config path
        assert "\n" not in text and "\r" not in text, (text, cfg)
        assert text.startswith("config"), (text, cfg)


@settings(max_examples=60, deadline=timedelta(seconds=5), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(configs())
def test_random_configs(cfg):
    check_config(cfg)


@pytest.mark.slow
@settings(max_examples=2000, deadline=timedelta(seconds=5), database=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_random_configs_many(cfg):
    check_config(cfg)
