"""EnergyBaseline: exact per-element references for frames of different sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amptorch import InputError
from amptorch.data import EnergyBaseline, FeatureRecord


def _rec(numbers, energy):
    numbers = np.asarray(numbers, dtype=np.int64)
    return FeatureRecord(numbers=numbers, features=np.zeros((len(numbers), 2)), energy=energy)


def _synthetic(rng, refs, noise=None):
    recs, per_atom_noise = [], []
    for k in range(12):
        n = int(rng.integers(2, 40))
        numbers = rng.choice([29, 78], size=n, p=[0.3 + 0.04 * k, 0.7 - 0.04 * k])
        e = sum(refs[z] for z in numbers)
        if noise is not None:
            per_atom_noise.append(noise[k])
            e += n * noise[k]
        recs.append(_rec(numbers, e))
    return recs


def test_recovers_refs_exactly(rng):
    refs = {29: -3.7, 78: -6.1}
    bl = EnergyBaseline().fit(_synthetic(rng, refs))
    assert bl.refs[29] == pytest.approx(-3.7, abs=1e-8)
    assert bl.refs[78] == pytest.approx(-6.1, abs=1e-8)
    assert bl.refs[1] == 0.0 and bl.elements == [29, 78]
    assert bl.energy_scale == 1e-3  # nothing left: the floor
    assert bl.energy(np.array([29, 29, 78])) == pytest.approx(2 * -3.7 - 6.1)


def test_residual_scale(rng):
    refs = {29: -3.7, 78: -6.1}
    # per-atom residuals orthogonal to composition would be recovered exactly; check the std
    noise = rng.normal(0, 0.05, 12)
    recs = _synthetic(rng, refs, noise)
    bl = EnergyBaseline().fit(recs)
    resid = np.array([(r.energy - bl.energy(r.numbers)) / len(r.numbers) for r in recs])
    assert bl.energy_scale == pytest.approx(resid.std())
    assert 0.01 < bl.energy_scale < 0.1
    assert abs(bl.refs[29] + 3.7) < 0.2


def test_one_element_and_collinear():
    bl = EnergyBaseline().fit([_rec([29] * 4, -14.0), _rec([29] * 8, -28.8)])
    assert bl.refs[29] == pytest.approx(-3.55)
    assert bl.energy_scale == pytest.approx(0.05)
    # every frame H2O: H and O are collinear; the ridge gives a finite answer that fits
    h2o = [_rec([1, 1, 8], -14.2), _rec([1, 1, 8, 1, 1, 8], -28.4)]
    bl = EnergyBaseline().fit(h2o)
    assert np.isfinite(bl.refs).all()
    assert 2 * bl.refs[1] + bl.refs[8] == pytest.approx(-14.2, abs=1e-6)


def test_dict_round_trip_and_errors(rng):
    bl = EnergyBaseline().fit(_synthetic(rng, {29: -1.0, 78: -2.0}))
    back = EnergyBaseline.from_dict(json.loads(json.dumps(bl.to_dict())))
    np.testing.assert_array_equal(back.refs, bl.refs)
    assert back.energy_scale == bl.energy_scale and back.elements == bl.elements
    with pytest.raises(InputError, match="structure 1: energy: got None"):
        EnergyBaseline().fit([_rec([29], -1.0), _rec([29], None)])
