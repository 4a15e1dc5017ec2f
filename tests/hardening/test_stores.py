"""LMDB stores that know what they hold: per-record checksums, an input fingerprint (resume only onto the
same inputs), a writer lock, truncated / foreign / pickled files refused before mapping, a full disk, and no
leftovers (amptorch/data/lmdb.py)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pickle

import lmdb
import numpy as np
import pytest

import amptorch.data.lmdb as lm
from amptorch.data import LmdbDataset, read_metadata, update_metadata, write_lmdb
from amptorch.descriptors import GMP
from amptorch.errors import InputError
from amptorch.testing import make_cu_emt

from .conftest import isolated, one_line


@pytest.fixture(scope="module")
def images():
    return make_cu_emt(4, seed=5, a=3.61, big_every=0, vacancy_every=0)


@pytest.fixture(scope="module")
def descriptor():
    return GMP(orders=[0, 1], sigmas=[0.5, 1.0], cutoff=5.0, smooth_cutoff="cosine")


def write(path, images, descriptor, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 2)
    return write_lmdb(path, images, descriptor, **kw)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------ checksums


def flip_one_byte(path, key: bytes, at: int = -3) -> None:
    env = lmdb.open(str(path), subdir=False, lock=False, map_size=1 << 30)
    with env.begin(write=True) as txn:
        blob = bytearray(txn.get(key))
        blob[at] ^= 0x01
        txn.put(key, bytes(blob))
    env.close()


def test_a_flipped_byte_is_named_with_its_record_and_file(tmp_path, images, descriptor):
    path = tmp_path / "fps.lmdb"
    meta = write(path, images, descriptor)
    assert meta["version"] == lm.VERSION == 2
    flip_one_byte(path, lm.record_key(2))
    ds = LmdbDataset(path)
    ds[1]  # the others read
    with pytest.raises(InputError) as err:
        ds[2]
    one_line(err.value, "record 2 of", str(path), "damaged", "crc32", "--overwrite")
    # a damaged field table (header) is caught too
    path2 = tmp_path / "fps2.lmdb"
    write(path2, images, descriptor)
    env = lmdb.open(str(path2), subdir=False, lock=False, map_size=1 << 30)
    with env.begin(write=True) as txn:
        blob = bytes(txn.get(lm.record_key(0)))
        txn.put(lm.record_key(0), blob.replace(b'"features","<f8",[32,', b'"features","<f8",[16,', 1))
    env.close()
    with pytest.raises(InputError, match="record 0 of .*damaged"):
        LmdbDataset(path2)[0]


def test_version_1_stores_still_read_without_checksums(tmp_path, images, descriptor):
    """A store written before checksums (format version 1: no crc32 in the record headers) still reads."""
    path = tmp_path / "v1.lmdb"
    write(path, images, descriptor)
    ref = [LmdbDataset(path)[k] for k in range(len(images))]
    lm._drop_reader(str(path))
    env = lmdb.open(str(path), subdir=False, lock=False, map_size=1 << 30)
    with env.begin(write=True) as txn:
        for k in range(len(images)):
            blob = bytes(txn.get(lm.record_key(k)))
            (hlen,) = np.frombuffer(blob[8:16], "<u8")
            header = json.loads(blob[16 : 16 + int(hlen)])
            del header["crc32"]
            new = json.dumps(header, separators=(",", ":")).encode()
            new += b" " * (int(hlen) - len(new))
            txn.put(lm.record_key(k), blob[:16] + new + blob[16 + int(hlen) :])
        meta = json.loads(bytes(txn.get(lm.METADATA_KEY)))
        meta["version"] = 1
        del meta["inputs_sha256"]
        txn.put(lm.METADATA_KEY, json.dumps(meta).encode())
    env.close()
    ds = LmdbDataset(path)
    for k in range(len(images)):
        np.testing.assert_array_equal(ds[k].features, ref[k].features)
    # a version-2 store whose record lost its checksum is refused
    with pytest.raises(InputError, match="no checksum"):
        lm.decode_record(lm.encode_record(ref[0]).replace(b',"crc32":', b',"crc_xx":'), key="0", checksum=True)
    # resuming a version-1 store cannot check its inputs: refused, offering overwrite
    with pytest.raises(InputError) as err:
        write(path, images, descriptor)
    one_line(err.value, "before input fingerprints", "--overwrite")
    meta = write(path, images, descriptor, overwrite=True)
    assert meta["version"] == 2 and meta["count"] == len(images)


# ---------------------------------------------------------- input fingerprint


def test_resume_continues_only_onto_the_same_inputs(tmp_path, images, descriptor):
    path = tmp_path / "fps.lmdb"
    meta = write(path, images, descriptor)
    fp = meta["inputs_sha256"]
    assert fp == lm.inputs_fingerprint(images) and len(fp) == 64
    assert write(path, images, descriptor)["count"] == 4  # the same inputs: nothing to do
    other = make_cu_emt(4, seed=6, a=3.61, big_every=0, vacancy_every=0)  # same length, other structures
    with pytest.raises(InputError) as err:
        write(path, other, descriptor)
    one_line(err.value, str(path), "other inputs", fp[:12], "--overwrite")
    relabelled = [a.copy() for a in images]  # same structures, one energy changed
    for a, b in zip(relabelled, images, strict=True):
        a.calc = b.calc
    from ase.calculators.singlepoint import SinglePointCalculator

    relabelled[3].calc = SinglePointCalculator(
        relabelled[3], energy=images[3].get_potential_energy() + 1e-9, forces=images[3].get_forces()
    )
    with pytest.raises(InputError, match="other inputs"):
        write(path, relabelled, descriptor)
    assert read_metadata(path)["inputs_sha256"] == fp  # untouched
    meta = write(path, other, descriptor, overwrite=True)
    assert meta["inputs_sha256"] == lm.inputs_fingerprint(other) and meta["count"] == 4
    ds = LmdbDataset(path)
    np.testing.assert_array_equal(ds[0].energy, other[0].get_potential_energy())
    assert leftovers(tmp_path) == ["fps.lmdb"]


def test_bad_label_stops_before_anything_is_written(tmp_path, images, descriptor):
    bad = [a.copy() for a in images]  # no calculators: no labels
    with pytest.raises(InputError, match="structure 0"):
        write(tmp_path / "fps.lmdb", bad, descriptor)
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_only_amptorch_stores(tmp_path, images, descriptor):
    data = tmp_path / "data.extxyz"
    data.write_text("not a database\n")
    with pytest.raises(InputError, match="not an LMDB file"):
        write(data, images, descriptor, overwrite=True)
    assert data.read_text() == "not a database\n"


# ---------------------------------------------------------------- writer lock


def test_a_second_writer_gets_a_clear_error(tmp_path, images, descriptor):
    path = tmp_path / "fps.lmdb"
    write(path, images[:2], descriptor)
    assert leftovers(tmp_path) == ["fps.lmdb"]  # the lock file is removed after writing
    fd = os.open(str(path) + "-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another writer (flock locks per open file: this process counts)
    try:
        with pytest.raises(InputError) as err:
            write(path, images[:2], descriptor)
        one_line(err.value, str(path), "another process is writing it", "-lock")
        with pytest.raises(InputError, match="another process"):
            update_metadata(path, note="x")
        LmdbDataset(path)[0]  # readers never wait
    finally:
        os.close(fd)
    # a stale lock file (its process died: the OS released the lock) does not block
    assert os.path.exists(str(path) + "-lock")
    update_metadata(path, note="x")
    assert read_metadata(path)["note"] == "x"
    assert leftovers(tmp_path) == ["fps.lmdb"]


def test_concurrent_writers_never_leave_metadata_that_disagrees(tmp_path, images, descriptor):
    """Two writers at once: one writes, the other is refused; the metadata counts exactly the records."""
    import threading

    path = tmp_path / "fps.lmdb"
    results: list = []

    def run(imgs):
        try:
            results.append(write(path, imgs, descriptor, batch_size=1)["count"])
        except InputError as err:
            results.append(str(err))

    other = make_cu_emt(4, seed=9, a=3.61, big_every=0, vacancy_every=0)
    threads = [threading.Thread(target=run, args=(imgs,)) for imgs in (images, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 4 in results, results
    assert all(r == 4 or "another process is writing" in r or "other inputs" in r for r in results), results
    meta = read_metadata(path)
    with lm._reader(str(path)).begin() as txn:
        keys = [bytes(k) for k, _ in txn.cursor() if bytes(k) != lm.METADATA_KEY]
    assert meta["count"] == len(keys) == 4
    assert meta["inputs_sha256"] in (lm.inputs_fingerprint(images), lm.inputs_fingerprint(other))


# ----------------------------------------------------- truncated / foreign files


def test_truncated_store_is_an_input_error_not_sigbus(tmp_path, images, descriptor):
    path = tmp_path / "fps.lmdb"
    write(path, images, descriptor)
    size = path.stat().st_size
    for keep in (size - 4096, size // 2, 4096 + 100, 100):
        cut = tmp_path / f"cut{keep}.lmdb"
        cut.write_bytes(path.read_bytes()[:keep])
        res = isolated(
            f"""
            from amptorch.data import LmdbDataset
            ds = LmdbDataset({str(cut)!r})
            [ds[k] for k in range(len(ds))]
            """,
            timeout=60,
        )
        assert res["type"] == "InputError", res
        one_line(res["message"], str(cut), "truncated" if keep > 200 else "not an LMDB file")
        with pytest.raises(InputError, match="truncated|not an LMDB"):
            write(cut, images, descriptor)  # nor written into
        assert not os.path.exists(str(cut) + "-lock")


def test_foreign_files_and_folders(tmp_path, images, descriptor):
    foreign = tmp_path / "data.extxyz"
    foreign.write_text("2\n\nH 0 0 0\nH 0 0 1\n" * 200)
    for target in (foreign, tmp_path):
        with pytest.raises(InputError) as err:
            LmdbDataset(target)
        one_line(err.value, str(target))
        with pytest.raises(InputError) as err:
            write(target, images, descriptor)
        one_line(err.value, str(target), "folder" if target == tmp_path else "not an LMDB file")
    assert leftovers(tmp_path) == ["data.extxyz"]
    empty = tmp_path / "empty.lmdb"
    empty.touch()
    with pytest.raises(InputError, match="an empty file"):
        LmdbDataset(empty)
    write(empty, images[:2], descriptor)  # an empty file is a new store
    assert len(LmdbDataset(empty)) == 2


def test_pickled_store_of_the_original_is_refused(tmp_path, images, descriptor):
    path = tmp_path / "old.lmdb"
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"length", pickle.dumps(1))
        txn.put(b"0", pickle.dumps({"fingerprint": [1.0]}))
    env.close()
    before = path.read_bytes()
    for kw in ({}, {"overwrite": True}):
        with pytest.raises(InputError) as err:
            write(path, images, descriptor, **kw)
        one_line(err.value, str(path), "pickled store of the original AmpTorch", "amptorch convert-lmdb")
    assert path.read_bytes() == before
    other = tmp_path / "other.lmdb"
    env = lmdb.open(str(other), subdir=False, map_size=1 << 24, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(InputError, match="another program"):
        write(other, images, descriptor)


# ------------------------------------------------------------------ full disk


def enospc_on_call(monkeypatch, n: int) -> list:
    calls: list = []
    real = lm._commit

    def commit(*args):
        calls.append(1)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args)

    monkeypatch.setattr(lm, "_commit", commit)
    return calls


def test_full_disk_first_batch_leaves_nothing(tmp_path, images, descriptor, monkeypatch):
    enospc_on_call(monkeypatch, 1)
    with pytest.raises(InputError) as err:
        write(tmp_path / "fps.lmdb", images, descriptor)
    one_line(err.value, "fps.lmdb", "No space left on device", "free disk space", "nothing was kept")
    assert leftovers(tmp_path) == []


def test_full_disk_later_keeps_whole_batches_and_resumes(tmp_path, images, descriptor, monkeypatch):
    path = tmp_path / "fps.lmdb"
    enospc_on_call(monkeypatch, 2)
    with pytest.raises(InputError, match="the 2 structures committed are kept: run again to resume"):
        write(path, images, descriptor)
    assert leftovers(tmp_path) == ["fps.lmdb"]
    meta = read_metadata(path)
    assert meta["count"] == 2 and len(LmdbDataset(path, allow_incomplete=True)) == 2
    monkeypatch.undo()
    assert write(path, images, descriptor)["count"] == 4
    assert len(LmdbDataset(path)) == 4
