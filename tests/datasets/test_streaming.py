"""Streaming scaler and baseline statistics (issue 11): one pass, chunked or merged from shards, equal to the
in-memory formulas (numpy over all atoms at once; lstsq on all frames) to 1e-12."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from amptorch.data import EnergyBaseline, FeatureScaler
from amptorch.data.streaming import EnergyStats, FeatureStats, stream_chunks
from amptorch.descriptors.record import N_Z
from amptorch.errors import InputError

ELEMENTS = np.array([1, 6, 8, 29, 79])
REFS = np.array([-1.1, -3.0, -2.2, -4.1, -5.3])


def make_records(n: int = 240, seed: int = 0) -> list[SimpleNamespace]:
    """Structures of 1-30 atoms of five elements; features of very different scales (and a constant one);
    energies = sum of per-element references + noise (eV)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 31))
        z = rng.choice(ELEMENTS, k)
        f = rng.normal(3.0, 2.0, (k, 6)) * np.array([1.0, 1e3, 1e-4, 1.0, 5.0, 1.0]) + 50.0 * (z[:, None] == 79)
        f[:, 5] = 0.7
        e = float(REFS[np.searchsorted(ELEMENTS, z)].sum() + rng.normal(0.0, 0.03 * k))
        out.append(SimpleNamespace(numbers=z, features=f, energy=e))
    return out


def reference_tables(records, kind: str, elementwise: bool, lo=0.0, hi=1.0, threshold=1e-6):
    """The in-memory fit: statistics of all atoms at once (the scaler's formulas, before streaming)."""
    x = np.concatenate([r.features for r in records])
    z = np.concatenate([r.numbers for r in records])

    def stats(rows):
        if kind == "normalize":
            spread = rows.max(0) - rows.min(0)
            spread[spread < threshold] = 1.0
            scale = spread / (hi - lo)
            return rows.min(0) - lo * scale, scale
        std = rows.std(0)
        std[std < threshold] = 1.0
        return rows.mean(0), std

    g = stats(x)
    shift, scale = np.tile(g[0], (N_Z, 1)), np.tile(g[1], (N_Z, 1))
    if elementwise:
        for el in np.unique(z):
            shift[el], scale[el] = stats(x[z == el])
    return shift, scale


def reference_baseline(records, ridge=1e-10):
    """The in-memory least squares: lstsq on every frame's composition fractions (ridge as extra rows)."""
    counts = np.array([np.bincount(r.numbers, minlength=N_Z) for r in records], dtype=float)
    n = counts.sum(1)
    cols = np.flatnonzero(counts.any(0))
    a, y = counts[:, cols] / n[:, None], np.array([r.energy for r in records]) / n
    lam = ridge * float((a * a).sum()) / len(cols)
    sol = np.linalg.lstsq(np.vstack([a, np.sqrt(lam) * np.eye(len(cols))]), np.concatenate([y, np.zeros(len(cols))]),
                          rcond=None)[0]  # fmt: skip
    return cols, sol, float((y - a @ sol).std())


def rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300))


@pytest.mark.parametrize("kind", ["normalize", "standardize"])
@pytest.mark.parametrize("elementwise", [True, False])
def test_scaler_streaming_equals_in_memory(kind, elementwise):
    records = make_records()
    ref_shift, ref_scale = reference_tables(records, kind, elementwise)
    fitted = FeatureScaler(kind, elementwise=elementwise).fit(records)
    assert rel(fitted.shift, ref_shift) < 1e-12 and rel(fitted.scale, ref_scale) < 1e-12
    # chunks of 7 records, and shards of 100 merged: the same tables
    stats = FeatureStats()
    for k, chunk in enumerate(stream_chunks(records, 7)):
        stats.update_records(chunk, 7 * k)
    shards = [FeatureStats().update_records(records[s : s + 100]) for s in range(0, len(records), 100)]
    merged = shards[0].merge(shards[1]).merge(shards[2])
    for s in (stats, merged):
        other = FeatureScaler(kind, elementwise=elementwise).fit_stats(s)
        assert rel(other.shift, ref_shift) < 1e-12 and rel(other.scale, ref_scale) < 1e-12
    assert merged.records == stats.records == len(records)
    # the constant feature is shifted, not blown up; absent elements get the global row
    assert np.all(fitted.scale[:, 5] == 1.0)
    assert np.array_equal(fitted.shift[2], fitted.shift[3])  # He and Li: absent


def test_scaler_one_generator_pass():
    """fit takes any iterable and reads it once (a generator over a store)."""
    records = make_records(50)
    reads = []

    def stream():
        for r in records:
            reads.append(1)
            yield r

    a = FeatureScaler("standardize").fit(stream())
    b = FeatureScaler("standardize").fit(records)
    assert len(reads) == 50 and np.array_equal(a.shift, b.shift) and np.array_equal(a.scale, b.scale)


def test_baseline_streaming_equals_in_memory():
    records = make_records()
    cols, sol, scale = reference_baseline(records)
    fitted = EnergyBaseline().fit(records)
    assert fitted.elements == ELEMENTS.tolist()
    assert rel(fitted.refs[cols], sol) < 1e-12 and abs(fitted.energy_scale - scale) < 1e-12 * scale
    assert rel(fitted.refs[cols], REFS) < 0.05  # the references it was made with
    # more rows than one fold (4 x 120), merged from shards in another order
    many = make_records(1100, seed=3)
    cols, sol, scale = reference_baseline(many)
    shards = [EnergyStats().update_records(many[s : s + 300]) for s in range(0, len(many), 300)]
    merged = shards[3].merge(shards[1]).merge(shards[0]).merge(shards[2])
    for stats in (merged, EnergyStats().update_records(many)):
        b = EnergyBaseline().fit_stats(stats)
        assert rel(b.refs[cols], sol) < 1e-12 and abs(b.energy_scale - scale) < 1e-12 * scale


def test_baseline_collinear_compositions():
    """Every frame H2O: refs are the smallest-norm answer the ridge picks, as the in-memory lstsq gives."""
    records = [SimpleNamespace(numbers=np.array([1, 1, 8] * k), energy=-5.0 * k + 0.01 * (k % 3)) for k in range(1, 40)]
    cols, sol, scale = reference_baseline(records)
    b = EnergyBaseline().fit(records)
    assert rel(b.refs[cols], sol) < 1e-9 and abs(b.energy_scale - max(scale, b.floor)) < 1e-12


def test_errors():
    with pytest.raises(InputError, match="scaling: no training structures"):
        FeatureScaler().fit([])
    with pytest.raises(InputError, match="baseline: no training structures"):
        EnergyBaseline().fit([])
    good = make_records(3)
    bad = SimpleNamespace(numbers=np.array([1, 1]), features=np.array([[1.0] * 6, [np.nan] * 6]), energy=1.0)
    with pytest.raises(InputError, match="structure 3: features: non-finite"):
        FeatureScaler().fit([*good, bad])
    short = SimpleNamespace(numbers=np.array([1]), features=np.ones((1, 4)), energy=1.0)
    with pytest.raises(InputError, match=r"structure 2: features: shape \(1, 4\); expected \(1, 6\)"):
        FeatureScaler().fit([*good[:2], short])
    with pytest.raises(InputError, match="structure 1: energy: got None"):
        EnergyBaseline().fit([good[0], SimpleNamespace(numbers=np.array([1]), energy=None)])
    with pytest.raises(InputError, match="structure 0: numbers: no atoms"):
        EnergyBaseline().fit([SimpleNamespace(numbers=np.array([], dtype=int), energy=0.0)])
    with pytest.raises(InputError, match="features: 4 per atom; expected 6"):
        FeatureStats().update_records(good).merge(FeatureStats().update_records([short]))
