"""LMDB: round trip, resume after a kill, refusal of other settings, no pickle."""

from __future__ import annotations

import pickle

import lmdb
import numpy as np
import pytest
from torch.utils.data import DataLoader

import amptorch.data.lmdb as lm
from amptorch import InputError
from amptorch.data import (
    AtomsDataset,
    LmdbDataset,
    collate,
    featurize,
    get_lmdb_dataset,
    read_metadata,
    update_metadata,
    write_lmdb,
)
from amptorch.descriptors import GaussianSF

from .test_data_featurize import assert_same


def test_round_trip(tmp_path, images, descriptor):
    path = tmp_path / "fps.lmdb"
    meta = write_lmdb(path, images, descriptor, batch_size=4, progress=False, strain=True, stress=False)
    assert meta["count"] == meta["total"] == 6 and meta["descriptor_hash"] == descriptor.hash
    assert meta["elements"] == [1, 8, 29, 78] and meta["n_features"] == descriptor.length
    ref = featurize(images, descriptor, strain=True, progress=False)
    for cache in ("no", "partial", "full"):
        ds = get_lmdb_dataset(str(path), cache_type=cache)
        assert len(ds) == 6 and ds.n_features == descriptor.length and ds.elements == [1, 8, 29, 78]
        for k in range(6):
            assert_same(ds[k], ref[k])
            np.testing.assert_array_equal(ds[k].pbc, ref[k].pbc)
            np.testing.assert_array_equal(ds[k].cell, ref[k].cell)
        assert_same(ds[-1], ref[5])
    assert ds.descriptor().hash == descriptor.hash
    write_lmdb(tmp_path / "f32.lmdb", images[:2], descriptor, dtype=np.float32, progress=False)
    f32 = LmdbDataset(tmp_path / "f32.lmdb")
    assert f32.metadata["dtype"] == "float32" and f32[1].features.dtype == np.float32
    np.testing.assert_array_equal(f32[1].dfeat, descriptor.compute(images[1], dtype=np.float32).dfeat)
    ds[0].features[0, 0] = 1e9  # records are writable copies (full cache hands out its records)


def test_records_and_several_files(tmp_path, records):
    write_lmdb(tmp_path / "a.lmdb", AtomsDataset(records[:2]), progress=False)
    write_lmdb(tmp_path / "b.lmdb", records[2:], progress=False)
    ds = LmdbDataset([tmp_path / "a.lmdb", tmp_path / "b.lmdb"])
    assert len(ds) == 6
    for k in range(6):
        assert_same(ds[k], records[k])
    batches = list(DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate))
    assert sum(len(b) for b in batches) == 6
    np.testing.assert_allclose(batches[0].energy.numpy(), [r.energy for r in records[:4]])
    with pytest.raises(IndexError):
        ds[6]


def test_resume_after_kill(tmp_path, images, descriptor, monkeypatch):
    path = tmp_path / "fps.lmdb"
    calls: list[list[int]] = []
    real = lm.featurize

    def dies_on_second_batch(imgs, *args, **kwargs):
        calls.append(list(kwargs["indices"]))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the job is killed mid-way
        return real(imgs, *args, **kwargs)

    monkeypatch.setattr(lm, "featurize", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        write_lmdb(path, images, descriptor, batch_size=3, progress=False)
    assert read_metadata(path)["count"] == 3
    with pytest.raises(InputError, match="incomplete \\(3 of 6"):
        LmdbDataset(path)
    assert len(LmdbDataset(path, allow_incomplete=True)) == 3

    calls.clear()
    monkeypatch.setattr(
        lm, "featurize", lambda imgs, *a, **kw: calls.append(kw["indices"]) or real(imgs, *a, **kw)
    )
    meta = write_lmdb(path, images, descriptor, batch_size=3, progress=False)
    assert calls == [[3, 4, 5]]
    assert meta["count"] == 6
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        keys = [k for k, _ in txn.cursor()]
    env.close()
    assert keys == [b"%012d" % k for k in range(6)] + [b"__metadata__"]
    ref = featurize(images, descriptor, progress=False)
    ds = LmdbDataset(path)
    for k in range(6):
        assert_same(ds[k], ref[k])
    # a third call writes nothing
    calls.clear()
    write_lmdb(path, images, descriptor, batch_size=3, progress=False)
    assert calls == []


def test_refuses_other_settings(tmp_path, images, descriptor):
    path = tmp_path / "fps.lmdb"
    write_lmdb(path, images[:2], descriptor, progress=False)
    other = GaussianSF(["Cu", "Pt", "H", "O"], g2=[(0.05, 0.0)], cutoff=4.5)
    with pytest.raises(InputError, match=f"{descriptor.hash[:16]}.*{other.hash[:16]}"):
        write_lmdb(path, images[:2], other, progress=False)
    with pytest.raises(InputError, match="strain is False in the database, True"):
        write_lmdb(path, images[:2], descriptor, strain=True, progress=False)
    write_lmdb(tmp_path / "other.lmdb", images[:2], other, progress=False)
    with pytest.raises(InputError, match="descriptor hash"):
        LmdbDataset([path, tmp_path / "other.lmdb"])
    with pytest.raises(InputError, match="descriptor: required"):
        write_lmdb(tmp_path / "x.lmdb", images, progress=False)
    with pytest.raises(InputError, match="no such file"):
        LmdbDataset(tmp_path / "missing.lmdb")


def test_no_pickle(tmp_path, records, monkeypatch):
    path = tmp_path / "fps.lmdb"
    write_lmdb(path, records, progress=False)
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        values = [bytes(v) for _, v in txn.cursor()]
    env.close()
    for v in values:
        assert not v.startswith(b"\x80")  # pickle protocol >= 2 opcode
        assert v.startswith(lm.MAGIC) or v.startswith(b"{")

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_pickle)
    monkeypatch.setattr(np, "load", no_pickle)
    ds = LmdbDataset(path, cache="full")
    assert_same(ds[3], records[3])


def test_metadata_update_and_corrupt_record(tmp_path, records):
    path = tmp_path / "fps.lmdb"
    write_lmdb(path, records[:2], progress=False, metadata={"note": "x"})
    update_metadata(path, feature_scaler={"type": "normalize"})
    meta = LmdbDataset(path).metadata
    assert meta["note"] == "x" and meta["feature_scaler"] == {"type": "normalize"}
    with pytest.raises(InputError, match="written by write_lmdb"):
        update_metadata(path, count=3)
    with pytest.raises(InputError, match="not an amptorch record"):
        lm.decode_record(pickle.dumps({"a": 1}), key="0")
