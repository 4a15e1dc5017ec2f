"""Geometry-only LMDB records (issue 11): round trips, size per atom, reading with neighbour lists, errors."""

from __future__ import annotations

import json
import os
import struct

import lmdb
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from amptorch.data import (
    GeometryDataset,
    GeometryRecord,
    LmdbDataset,
    collate,
    featurize,
    geometry_record,
    write_lmdb,
)
from amptorch.data.lmdb import decode_record, encode_record, get_lmdb_dataset, record_key
from amptorch.errors import InputError
from amptorch.testing import make_cu_emt

FIELDS = ("numbers", "positions", "cell", "pbc", "forces", "stress")


def assert_same_geometry(a: GeometryRecord, b: GeometryRecord) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.energy == b.energy


@pytest.fixture(scope="module")
def cu20():
    return make_cu_emt(20, seed=2, big_every=0)


def test_record_round_trip_and_size(images):
    for k, atoms in enumerate(images):
        rec = geometry_record(atoms, k, stress=atoms.pbc.all())
        with_nl = rec.with_neighbors(4.0)
        blob = encode_record(with_nl)  # neighbour lists are never stored
        back = decode_record(blob, key=str(k))
        assert isinstance(back, GeometryRecord) and back.pair_i is None
        assert_same_geometry(back, rec)
        assert back.numbers.dtype == np.int64 and back.pbc.dtype == bool
        assert encode_record(back) == blob
    # 32 Cu atoms, float64 positions and forces: numbers (1 B), positions + forces (48 B) per atom, plus a
    # fixed ~330 B (JSON field table, cell, pbc, energy): 59.3 B per atom
    bulk = geometry_record(make_cu_emt(1, seed=0, big_every=0, vacancy_every=0)[0])
    per_atom = len(encode_record(bulk)) / bulk.n_atoms
    print(f"geometry record: {len(encode_record(bulk))} B for {bulk.n_atoms} atoms = {per_atom:.1f} B/atom")
    assert 49 < per_atom <= 70


def test_store_reads_geometry_and_builds_neighbor_lists(cu20, tmp_path):
    path = tmp_path / "geo.lmdb"
    meta = write_lmdb(path, cu20, kind="geometry", progress=False)
    assert meta["kind"] == "geometry" and meta["descriptor"] is None and meta["count"] == 20
    atoms = sum(len(a) for a in cu20)
    per_atom = os.path.getsize(path) / atoms
    print(f"geometry store: {os.path.getsize(path)} B for {atoms} atoms = {per_atom:.1f} B/atom")
    # the file: records of ~1.9 kB, about one per 4 KiB LMDB page as keys are inserted before the metadata key
    # (page splits), plus the meta pages: 161 B/atom here, ~133 B/atom for 200 such structures
    assert per_atom <= 200
    data = get_lmdb_dataset(str(path))
    assert isinstance(data, LmdbDataset) and data.kind == "geometry" and data.elements == [29]
    memory = GeometryDataset(cu20, cutoff=4.0)
    for k in range(len(cu20)):
        assert data[k].pair_i is None
        assert_same_geometry(data[k], memory.records[k])
    data.neighbors_within(4.0)
    for k in (0, 13):
        a, b = data[k], memory[k]
        for name in ("pair_i", "pair_j", "shifts"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
    # DataLoader workers read the store and build the neighbour lists
    loader = DataLoader(data, batch_size=8, num_workers=2, collate_fn=collate)
    got = list(loader)
    ref = collate(memory[0:8])
    for name in ("numbers", "positions", "cell", "pair_i", "pair_j", "shifts", "forces", "energy"):
        assert torch.equal(getattr(got[0], name), getattr(ref, name)), name
    assert len(got) == 3 and sum(int(b.energy.shape[0]) for b in got) == 20


def test_resume_and_refusals(cu20, tmp_path, descriptor):
    path = tmp_path / "geo.lmdb"
    write_lmdb(path, cu20[:10], kind="geometry", progress=False)
    again = write_lmdb(path, cu20[:10], kind="geometry", progress=False)  # nothing to do
    assert again["count"] == 10
    with pytest.raises(InputError, match="other inputs"):
        write_lmdb(path, cu20[10:], kind="geometry", progress=False)
    with pytest.raises(InputError, match="a geometry store, this call writes features"):
        write_lmdb(path, cu20[:10], descriptor, progress=False)
    with pytest.raises(InputError, match="descriptor: a geometry store holds no fingerprints"):
        write_lmdb(tmp_path / "x.lmdb", cu20, descriptor, kind="geometry", progress=False)
    with pytest.raises(InputError, match="kind: got 'geo'"):
        write_lmdb(tmp_path / "x.lmdb", cu20, kind="geo", progress=False)
    data = LmdbDataset(path)
    with pytest.raises(InputError, match="geometry store holds no fingerprints"):
        data.descriptor()
    with pytest.raises(InputError, match="cutoff: got -1.0"):
        data.neighbors_within(-1)
    # geometry records written as records give the same store as the structures
    recs = [geometry_record(a, k) for k, a in enumerate(cu20[:10])]
    write_lmdb(tmp_path / "recs.lmdb", recs, kind="geometry", progress=False)
    other = LmdbDataset(tmp_path / "recs.lmdb")
    assert all(encode_record(other[k]) == encode_record(data[k]) for k in range(10))
    with pytest.raises(InputError, match="FeatureRecords; expected GeometryRecords for kind='geometry'"):
        write_lmdb(tmp_path / "y.lmdb", featurize(cu20[:1], descriptor, derivatives=False, progress=False),
                   kind="geometry", progress=False)  # fmt: skip
    with pytest.raises(InputError, match="GeometryRecords; expected FeatureRecords for kind='features'"):
        write_lmdb(tmp_path / "y.lmdb", recs, progress=False)


def test_feature_store_is_not_geometry(records, images, tmp_path):
    path = tmp_path / "fps.lmdb"
    write_lmdb(path, records, progress=False)
    data = LmdbDataset(path)
    assert data.kind == "features"
    with pytest.raises(InputError, match="holds fingerprints; expected a geometry store"):
        data.neighbors_within(4.0)
    write_lmdb(tmp_path / "geo.lmdb", images, kind="geometry", progress=False)
    with pytest.raises(InputError, match="geo.lmdb' has kind='geometry', .*fps.lmdb' has 'features'; expected"):
        LmdbDataset([path, tmp_path / "geo.lmdb"])


def test_damaged_and_unknown_records(cu20, tmp_path):
    blob = bytearray(encode_record(geometry_record(cu20[0])))
    blob[-9] ^= 0xFF  # a force component
    with pytest.raises(InputError, match="damaged"):
        decode_record(bytes(blob), key="0")
    # a record kind of a newer version
    good = encode_record(geometry_record(cu20[0]))
    (hlen,) = struct.unpack("<Q", good[8:16])
    header = json.loads(good[16 : 16 + hlen])
    header["kind"] = "wavefunction"
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((-len(raw)) % 8)
    with pytest.raises(InputError, match="kind 'wavefunction'; expected one of"):
        decode_record(good[:8] + struct.pack("<Q", len(raw)) + raw + good[16 + hlen :], key="0", checksum=False)
    # a damaged record in a store is named with its file
    path = tmp_path / "geo.lmdb"
    write_lmdb(path, cu20[:2], kind="geometry", progress=False)
    env = lmdb.open(str(path), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(record_key(1), bytes(blob))
    env.close()
    with pytest.raises(InputError, match="record 1 of .*geo.lmdb.*damaged"):
        LmdbDataset(path)[1]
    with pytest.raises(InputError, match="atomic numbers 1..118"):
        bad = geometry_record(cu20[0])
        bad.numbers[0] = 300
        encode_record(bad)
