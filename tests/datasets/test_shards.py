"""Sharded stores (issue 11): equal to the serial single-file store record by record, built in a process pool
or on a Dask LocalCluster, resumed after a SIGKILL, and every refusal a one-line InputError."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import ase.io
import numpy as np
import pytest

from amptorch.data import LmdbDataset, shards, write_lmdb
from amptorch.data.lmdb import encode_record, get_lmdb_dataset
from amptorch.data.shards import FileSource, ShardedDataset, build_store, read_store
from amptorch.errors import InputError
from amptorch.testing import DESCRIPTORS, make_cu_emt


@pytest.fixture(scope="module")
def cu20():
    return make_cu_emt(20, seed=5, big_every=0)


@pytest.fixture(scope="module")
def gmp():
    return DESCRIPTORS["gmp"](["Cu"])


def same_records(a, b) -> None:
    assert len(a) == len(b)
    for k in range(len(a)):
        assert encode_record(a.raw(k)) == encode_record(b.raw(k)), k


def test_sharded_equals_single_store(cu20, gmp, tmp_path):
    write_lmdb(tmp_path / "geo.lmdb", cu20, kind="geometry", progress=False)
    store = build_store(cu20, tmp_path / "geo", shard_size=6, workers=0)
    assert [s["count"] for s in store["shards"]] == [6, 6, 6, 2] and store["kind"] == "geometry"
    assert sorted(p.name for p in (tmp_path / "geo").iterdir()) == [
        "shard-00000.lmdb", "shard-00001.lmdb", "shard-00002.lmdb", "shard-00003.lmdb", "store.json"]  # fmt: skip
    sharded = get_lmdb_dataset(str(tmp_path / "geo"))
    assert isinstance(sharded, ShardedDataset) and len(sharded) == 20 and sharded.elements == [29]
    same_records(sharded, LmdbDataset(tmp_path / "geo.lmdb"))
    assert sharded[19].energy == cu20[19].get_potential_energy()
    # a store of features: the same FeatureRecords as write_lmdb's, and its descriptor
    write_lmdb(tmp_path / "fps.lmdb", cu20[:7], gmp, progress=False)
    build_store(cu20[:7], tmp_path / "fps", kind="features", descriptor=gmp, shard_size=3, workers=0)
    fps = ShardedDataset(tmp_path / "fps")
    same_records(fps, LmdbDataset(tmp_path / "fps.lmdb"))
    assert fps.descriptor().hash == gmp.hash and fps.n_features == gmp.length


def test_process_pool_and_file_source(cu20, tmp_path):
    ase.io.write(tmp_path / "data.extxyz", cu20)
    assert len(FileSource(str(tmp_path / "data.extxyz"))) == 20
    serial = build_store(str(tmp_path / "data.extxyz"), tmp_path / "serial", shard_size=7, workers=0)
    pooled = build_store(str(tmp_path / "data.extxyz"), tmp_path / "pool", shard_size=7, workers=2)
    assert pooled == serial
    same_records(ShardedDataset(tmp_path / "pool"), ShardedDataset(tmp_path / "serial"))


class DyingSource:
    """Structures whose reading ends the process (a worker killed by the OOM killer, say)."""

    def __len__(self) -> int:
        return 2

    def read(self, start: int, stop: int) -> list:
        import os

        os._exit(1)


def test_dead_worker_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="build_store: a worker process died .*run build_store again to resume"):
        build_store(DyingSource(), tmp_path / "x", workers=1)


def test_dask_local_cluster_equals_serial_store(cu20, gmp, tmp_path):
    distributed = pytest.importorskip("distributed")
    write_lmdb(tmp_path / "serial.lmdb", cu20, gmp, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        store = build_store(cu20, tmp_path / "dask", kind="features", descriptor=gmp, shard_size=5,
                            scheduler=cluster.scheduler_address)  # fmt: skip
        with distributed.Client(cluster) as client:  # a Client works too; a second run only checks the shards
            again = build_store(cu20, tmp_path / "dask", kind="features", descriptor=gmp, shard_size=5,
                                scheduler=client)  # fmt: skip
    assert again == store and len(store["shards"]) == 4
    same_records(ShardedDataset(tmp_path / "dask"), LmdbDataset(tmp_path / "serial.lmdb"))


KILLED_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    import amptorch.data.lmdb as lmdb_module
    from amptorch.data.shards import build_store

    commits, commit = [0], lmdb_module._commit

    def commit_then_die(*args):  # SIGKILL right after the n-th transaction is on disk
        commit(*args)
        commits[0] += 1
        if commits[0] == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)

    lmdb_module._commit = commit_then_die
    build_store(sys.argv[1], sys.argv[2], shard_size=8, batch_size=3, workers=0)
    """
)


def test_killed_build_resumes_and_equals_uninterrupted(cu20, tmp_path, monkeypatch):
    data = str(tmp_path / "data.extxyz")
    ase.io.write(data, cu20)
    out = tmp_path / "killed"
    # shard 0 takes 3 commits (3 + 3 + 2 structures); the 4th is the first of shard 1
    run = subprocess.run([sys.executable, "-c", KILLED_BUILD, data, str(out), "4"], capture_output=True)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()
    assert not (out / "store.json").exists() and (out / "build.json").is_file()
    assert LmdbDataset(out / "shard-00000.lmdb").metadata["count"] == 8
    assert LmdbDataset(out / "shard-00001.lmdb", allow_incomplete=True).metadata["count"] == 3
    with pytest.raises(InputError, match="build is unfinished"):
        ShardedDataset(out)
    ran, original = [], shards.build_shard

    def build_shard(task):
        ran.append(task["first_index"])
        return original(task)

    with monkeypatch.context() as m:
        m.setattr(shards, "build_shard", build_shard)
        resumed = build_store(data, out, shard_size=8, batch_size=3, workers=0)
    assert ran == [8, 16]  # the same file: complete shard 0 is not read again; shard 1 resumes
    reference = build_store(data, tmp_path / "whole", shard_size=8, batch_size=3, workers=0)
    assert resumed == reference and not (out / "build.json").exists()
    same_records(ShardedDataset(out), ShardedDataset(tmp_path / "whole"))
    # the file rewritten with other structures: every shard is read again, and refused
    ase.io.write(data, cu20[::-1])
    with pytest.raises(InputError, match="made from other inputs"):
        build_store(data, out, shard_size=8, batch_size=3, workers=0)


def test_refusals(cu20, gmp, tmp_path):
    out = tmp_path / "store"
    build_store(cu20[:6], out, shard_size=4, workers=0)
    with pytest.raises(InputError, match=r"other settings \(shard_size=4; this call: shard_size=3\).*overwrite=True"):
        build_store(cu20[:6], out, shard_size=3, workers=0)
    with pytest.raises(InputError, match=r"other settings \(kind='geometry'.*this call: kind='features'"):
        build_store(cu20[:6], out, kind="features", descriptor=gmp, shard_size=4, workers=0)
    with pytest.raises(InputError, match="made from other inputs"):
        build_store(cu20[6:12], out, shard_size=4, workers=0)
    rebuilt = build_store(cu20[6:12], out, shard_size=4, workers=0, overwrite=True)
    assert np.array_equal(ShardedDataset(out)[0].positions, cu20[6].positions) and rebuilt["count"] == 6
    # store.json: a newer format, damaged, edited
    meta = json.loads((out / "store.json").read_text())
    (out / "store.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(InputError, match="format version 99; expected <= 1 \\(upgrade amptorch\\)"):
        ShardedDataset(out)
    (out / "store.json").write_text('{"format": "amptorch-store", "vers')
    with pytest.raises(InputError, match="store.json unreadable"):
        get_lmdb_dataset(str(out))
    (out / "store.json").write_text(json.dumps({**meta, "total": 7}))
    with pytest.raises(InputError, match="store.json damaged"):
        ShardedDataset(out)
    shards = [dict(s) for s in meta["shards"]]
    shards[0]["inputs_sha256"] = "0" * 64
    (out / "store.json").write_text(json.dumps({**meta, "shards": shards}))
    with pytest.raises(InputError, match="shard shard-00000.lmdb holds other records"):
        ShardedDataset(out)
    (out / "store.json").write_text(json.dumps(meta))
    (out / "shard-00001.lmdb").unlink()
    with pytest.raises(InputError, match="shard shard-00001.lmdb missing"):
        ShardedDataset(out)
    # bad arguments and paths
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="holds 'mine.txt', which build_store did not write"):
        build_store(cu20[:2], tmp_path / "notes", overwrite=True, workers=0)
    assert (tmp_path / "notes" / "mine.txt").is_file()
    with pytest.raises(InputError, match="is a file; expected a folder"):
        build_store(cu20[:2], tmp_path / "notes" / "mine.txt", workers=0)
    with pytest.raises(InputError, match="descriptor: required for a store of features"):
        build_store(cu20[:2], tmp_path / "x", kind="features")
    with pytest.raises(InputError, match="shard_size: got 0; expected an integer >= 1"):
        build_store(cu20[:2], tmp_path / "x", shard_size=0)
    with pytest.raises(InputError, match="source: got int"):
        build_store(3, tmp_path / "x")
    with pytest.raises(InputError, match="source: no such file"):
        build_store(str(tmp_path / "none.extxyz"), tmp_path / "x")
    (tmp_path / "junk.extxyz").write_text("3\nnot a comment line = [\nCu 0 0\n")
    with pytest.raises(InputError, match="source: .*junk.extxyz: unreadable"):
        build_store(str(tmp_path / "junk.extxyz"), tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing written before the inputs are known
    with pytest.raises(InputError, match="structure 5: energy"):  # errors name the structure in the whole set
        build_store([*cu20[:5], cu20[5].copy()], tmp_path / "y", shard_size=4, workers=0)  # 5: no calculator
    with pytest.raises(InputError, match="a sharded store in a list"):
        get_lmdb_dataset([str(out), str(out)])
    # another descriptor; a second writer; a source that gives fewer structures than it says
    from amptorch.data.lmdb import writer_lock
    from amptorch.descriptors import GMP

    build_store(cu20[:2], tmp_path / "fps", kind="features", descriptor=gmp, workers=0)
    other = GMP(orders=(0, 1), sigmas=(0.3, 0.7), cutoff=4.0)
    with pytest.raises(InputError, match=r"other settings \(descriptor_hash="):
        build_store(cu20[:2], tmp_path / "fps", kind="features", descriptor=other, workers=0)
    with writer_lock(tmp_path / "fps" / "store.json"):
        with pytest.raises(InputError, match="another process is writing it"):
            build_store(cu20[:2], tmp_path / "fps", kind="features", descriptor=gmp, workers=0)
    with pytest.raises(InputError, match=r"source: structures 0..2: read 2; expected 3"):
        build_store(ShortSource(), tmp_path / "short", workers=0)


class ShortSource:
    def __len__(self) -> int:
        return 3

    def read(self, start: int, stop: int) -> list:
        return make_cu_emt(2, seed=0, big_every=0)


def test_without_dask(cu20, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(InputError, match=r"scheduler: Dask is not installed; expected pip install amptorch\[cluster\]"):
        build_store(cu20[:2], tmp_path / "x", scheduler="tcp://127.0.0.1:1")


def test_cli_featurize_sharded(cu20, tmp_path, monkeypatch, capsys):
    from amptorch.cli import main

    ase.io.write(tmp_path / "data.extxyz", cu20[:6])
    monkeypatch.chdir(tmp_path)
    assert main(["featurize", "data.extxyz", "--out", "store", "--geometry", "--shard-size", "4", "--workers", "1",
                 "-q"]) == 0  # fmt: skip
    assert read_store("store")["shards"][1]["count"] == 2
    ref = build_store("data.extxyz", tmp_path / "ref", shard_size=4, workers=0)
    assert read_store("store") == ref
    assert main(["featurize", "data.extxyz", "--out", "geo.lmdb", "--geometry", "-q"]) == 0  # one file, as before
    same_records(LmdbDataset("geo.lmdb"), ShardedDataset("store"))
    assert main(["featurize", "data.extxyz", "--out", "s2", "--geometry", "--float32"]) != 0
    assert "featurize --geometry: stores geometry and labels only" in capsys.readouterr().err
