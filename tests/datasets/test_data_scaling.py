"""FeatureScaler: fitted values and the dict round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amptorch import InputError
from amptorch.data import FeatureScaler


def _stack(records):
    return np.concatenate([r.features for r in records]), np.concatenate([r.numbers for r in records])


def _scaled(sc: FeatureScaler, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """What the tables mean (AtomisticModel applies them so): (x - shift[Z]) / scale[Z]."""
    return (x - sc.shift[z]) / sc.scale[z]


def test_standardize_elementwise(records):
    train = records[:4]
    sc = FeatureScaler("standardize").fit(train)
    assert sc.shift.shape == sc.scale.shape == (119, records[0].n_features)
    x, z = _stack(train)
    y = _scaled(sc, x, z)
    for el in np.unique(z):
        rows = y[z == el]
        np.testing.assert_allclose(rows.mean(axis=0), 0.0, atol=1e-9)
        std = rows.std(axis=0)
        raw_std = x[z == el].std(axis=0)
        # std 1 where the feature varies, untouched spread where it is constant
        np.testing.assert_allclose(std[raw_std >= 1e-6], 1.0, rtol=1e-9)
        np.testing.assert_allclose(std[raw_std < 1e-6], raw_std[raw_std < 1e-6])
    # elements absent from the training data get the global statistics
    np.testing.assert_allclose(sc.shift[26], x.mean(axis=0))


def test_normalize_range_and_global(records):
    train = records[:4]
    sc = FeatureScaler("normalize", range=(-1, 1), elementwise=False).fit(train)
    assert (sc.shift == sc.shift[0]).all() and (sc.scale == sc.scale[0]).all()
    x, z = _stack(train)
    y = _scaled(sc, x, z)
    assert y.min() >= -1 - 1e-12 and y.max() <= 1 + 1e-12
    varying = (x.max(0) - x.min(0)) >= 1e-6
    np.testing.assert_allclose(y.min(0)[varying], -1, atol=1e-12)
    np.testing.assert_allclose(y.max(0)[varying], 1, atol=1e-12)
    sc_el = FeatureScaler("normalize").fit(train)
    for el in np.unique(z):
        rows = _scaled(sc_el, x[z == el], z[z == el])
        assert rows.min() >= -1e-12 and rows.max() <= 1 + 1e-12


def test_threshold_constant_feature(records):
    from dataclasses import replace

    recs = [replace(r, features=np.c_[r.features, np.full(r.n_atoms, 2.0)]) for r in records]
    sc = FeatureScaler("standardize", elementwise=False).fit(recs)
    assert sc.scale[29, -1] == 1.0 and sc.shift[29, -1] == pytest.approx(2.0)


def test_dict_round_trip(records):
    sc = FeatureScaler("standardize").fit(records)
    d = json.loads(json.dumps(sc.to_dict()))
    back = FeatureScaler.from_dict(d)
    np.testing.assert_array_equal(back.shift, sc.shift)
    np.testing.assert_array_equal(back.scale, sc.scale)
    assert (back.kind, back.range, back.elementwise, back.threshold) == (
        sc.kind,
        sc.range,
        sc.elementwise,
        sc.threshold,
    )


def test_bad_options():
    with pytest.raises(InputError, match="scaling.type: got 'minmax'"):
        FeatureScaler("minmax")
    with pytest.raises(InputError, match="scaling.range"):
        FeatureScaler(range=(1, 0))
    with pytest.raises(InputError, match="unknown key 'typ'"):
        FeatureScaler.from_config({"typ": "normalize"})
    assert FeatureScaler.from_config({"type": "standardize"}).kind == "standardize"
