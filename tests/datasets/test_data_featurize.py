"""featurize: labels attached, disk cache round trip, atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from amptorch import InputError
from amptorch.data import featurize, structure_hash
from amptorch.data.featurize import cache_folder, save_npz_atomic
from amptorch.descriptors.record import FeatureRecord

FIELDS = ("numbers", "features", "pair_i", "pair_j", "dfeat", "dfeat_strain", "energy", "forces", "stress")


def assert_same(a: FeatureRecord, b: FeatureRecord):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


def test_matches_compute_and_attaches_labels(images, descriptor):
    recs = featurize(images, descriptor, progress=False, workers=3)
    for k, (a, r) in enumerate(zip(images, recs, strict=True)):
        ref = descriptor.compute(a, index=k)
        np.testing.assert_array_equal(r.features, ref.features)
        np.testing.assert_array_equal(r.dfeat, ref.dfeat)
        assert r.energy == pytest.approx(a.get_potential_energy())
        np.testing.assert_allclose(r.forces, a.get_forces())
        assert r.stress is None
    plain = featurize(images, descriptor, derivatives=False, with_labels=False, progress=False)
    assert plain[0].dfeat is None and plain[0].energy is None


def test_label_error_names_frame(images, descriptor):
    images[3].calc = None
    with pytest.raises(InputError, match="structure 3: energy"):
        featurize(images, descriptor, progress=False)
    with pytest.raises(InputError, match="structure 13: energy"):
        featurize(images[2:4], descriptor, progress=False, indices=[12, 13])


def test_cache_round_trip(tmp_path, images, descriptor, monkeypatch):
    first = featurize(images, descriptor, strain=True, progress=False, cache_dir=tmp_path)
    folder = cache_folder(tmp_path, descriptor)
    assert folder.name == descriptor.hash[:16]
    files = sorted(p.name for p in folder.glob("*.npz"))
    assert files == sorted(f"{structure_hash(a, True, True)}.npz" for a in images)
    assert not list(folder.glob("*.tmp"))

    def fail(*args, **kwargs):
        raise AssertionError("compute called although every structure is cached")

    monkeypatch.setattr(type(descriptor), "compute", fail)
    second = featurize(images, descriptor, strain=True, progress=False, cache_dir=tmp_path)
    for a, b in zip(first, second, strict=True):
        assert_same(a, b)
    # other flags are other files: a miss, so compute is called
    with pytest.raises(AssertionError, match="compute called"):
        featurize(images[:1], descriptor, strain=False, progress=False, cache_dir=tmp_path)


def test_cache_computes_only_missing(tmp_path, images, descriptor, monkeypatch):
    featurize(images[:3], descriptor, progress=False, cache_dir=tmp_path)
    calls = []
    orig = type(descriptor).compute

    def counting(self, atoms, *args, **kwargs):
        calls.append(kwargs.get("index"))
        return orig(self, atoms, *args, **kwargs)

    monkeypatch.setattr(type(descriptor), "compute", counting)
    featurize(images, descriptor, progress=False, cache_dir=tmp_path, workers=1)
    assert sorted(calls) == [3, 4, 5]


def test_corrupt_cache_file_is_recomputed(tmp_path, images, descriptor):
    ref = featurize(images[:1], descriptor, progress=False, cache_dir=tmp_path)[0]
    (path,) = cache_folder(tmp_path, descriptor).glob("*.npz")
    path.write_bytes(b"garbage")
    again = featurize(images[:1], descriptor, progress=False, cache_dir=tmp_path)[0]
    assert_same(ref, again)
    with np.load(path, allow_pickle=False) as z:
        assert "features" in z.files


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "x.npz"

    def boom(fh, **arrays):
        fh.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        save_npz_atomic(target, {"a": np.zeros(3)})
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_structure_hash_sensitivity(images):
    a = images[0]
    h = structure_hash(a, True, False)
    assert h == structure_hash(a.copy(), True, False)
    assert h != structure_hash(a, False, False)
    assert h != structure_hash(a, True, True)
    assert h != structure_hash(a, True, False, np.float32)
    b = a.copy()
    b.positions[0, 0] += 1e-9
    assert h != structure_hash(b, True, False)


def test_stress_and_float32(images, descriptor):
    bulk = [images[0], images[3]]
    recs = featurize(bulk, descriptor, strain=True, stress=True, dtype=np.float32, progress=False)
    for a, r in zip(bulk, recs, strict=True):
        np.testing.assert_allclose(r.stress, a.get_stress())
        assert r.features.dtype == np.float32 and r.dfeat_strain.shape == (len(a), descriptor.length, 3, 3)
    with pytest.raises(InputError, match="structure 1: stress: missing"):
        featurize(images[:2], descriptor, stress=True, progress=False)
