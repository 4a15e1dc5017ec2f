"""amptorch convert-lmdb: an LMDB in the original's layout (pickled, scaled torch_geometric records) is read
with a restricted unpickler and rewritten as ours; the records equal featurizing the same structures here,
and a file holding any other pickled class is refused without running it."""

from __future__ import annotations

import pickle
import sys
import types

import lmdb
import numpy as np
import pytest
import torch

from amptorch.data import featurize, get_lmdb_dataset
from amptorch.descriptors import GMP
from amptorch.errors import InputError
from tests.compat.conftest import MCSHS


def _fake_module(monkeypatch, name: str, **classes):
    """A stand-in module so that pickle writes the original's class paths (the original is not imported)."""
    module = types.ModuleType(name)
    for cls_name, cls in classes.items():
        cls.__module__, cls.__qualname__, cls.__name__ = name, cls_name, cls_name
        setattr(module, cls_name, cls)
    monkeypatch.setitem(sys.modules, name, module)
    parts = name.split(".")
    for k in range(1, len(parts)):  # parents that are not there (torch_geometric is not installed)
        parent = ".".join(parts[:k])
        if parent not in sys.modules:
            monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))


class Data:  # torch_geometric 1.x style: attributes in __dict__
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class FeatureScaler:
    pass


class TargetScaler:
    pass


def write_original(path, images, records, descriptor_setup) -> None:
    """The original's 1_construct_lmdb layout: normalize to (-1, 1) per element, standardize energies."""
    numbers = np.concatenate([r.numbers for r in records])
    feats = np.concatenate([r.features for r in records])
    fs = FeatureScaler()
    fs.transform, fs.elementwise, fs.forcetraining, fs.threshold = "normalize", True, True, 1e-6
    fs.unique, fs.scales = sorted(set(numbers.tolist())), {}
    for z in fs.unique:
        lo, hi = feats[numbers == z].min(0), feats[numbers == z].max(0)
        span = np.where(hi - lo < 1e-6, 1.0, hi - lo)
        scale = 2.0 / span
        fs.scales[z] = {"offset": torch.tensor(-1.0 - lo * scale), "scale": torch.tensor(scale)}
    energies = torch.tensor([r.energy for r in records], dtype=torch.float64)
    ts = TargetScaler()
    ts.forcetraining, ts.target_mean, ts.target_std = True, energies.mean(), energies.std()
    env = lmdb.open(str(path), subdir=False, map_size=1 << 26)
    with env.begin(write=True) as txn:
        for k, r in enumerate(records):
            n, F = r.features.shape
            scale = np.stack([fs.scales[z]["scale"].numpy() for z in r.numbers.tolist()])
            offset = np.stack([fs.scales[z]["offset"].numpy() for z in r.numbers.tolist()])
            dense = r.dense_dfeat() * scale[:, :, None, None]  # (n, F, n, 3), self terms included
            flat = dense.reshape(n * F, 3 * n)
            nz = np.nonzero(flat)
            fprimes = torch.sparse_coo_tensor(
                torch.tensor(np.vstack(nz)), torch.tensor(flat[nz]), flat.shape, check_invariants=True
            )
            data = Data(
                fingerprint=torch.tensor(r.features * scale + offset),
                atomic_numbers=torch.LongTensor(r.numbers),
                __num_nodes__=n,
                energy=(r.energy - ts.target_mean) / ts.target_std,
                forces=torch.tensor(r.forces) / ts.target_std,
                fprimes=fprimes,
            )
            txn.put(str(k).encode(), pickle.dumps(data, protocol=-1))
        for key, value in (("feature_scaler", fs), ("target_scaler", ts), ("length", len(records)),
                           ("elements", np.unique([s for a in images for s in a.get_chemical_symbols()])),
                           ("descriptor_setup", descriptor_setup)):  # fmt: skip
            txn.put(key.encode(), pickle.dumps(value, protocol=-1))
    env.close()


def test_convert_original_lmdb(images, tmp_path, monkeypatch):
    from amptorch.cli import main

    _fake_module(monkeypatch, "torch_geometric.data.data", Data=Data)
    _fake_module(monkeypatch, "amptorch.preprocessing.utils", FeatureScaler=FeatureScaler, TargetScaler=TargetScaler)
    descriptor = GMP.from_amptorch(MCSHS)
    ours = featurize(images[:5], descriptor, progress=False)
    setup = ("gmpordernorm", MCSHS, "NA", np.unique(["Cu", "C", "O"]))
    write_original(tmp_path / "old.lmdb", images[:5], ours, setup)
    monkeypatch.undo()  # the converter must not need the stand-in modules

    assert main(["convert-lmdb", str(tmp_path / "old.lmdb"), "--out", str(tmp_path / "new.lmdb"), "-q"]) == 0
    converted = get_lmdb_dataset([str(tmp_path / "new.lmdb")], "full")
    assert converted.descriptor().hash == descriptor.hash and len(converted) == 5
    for got, want in zip(converted, ours, strict=True):
        np.testing.assert_array_equal(got.numbers, want.numbers)
        np.testing.assert_allclose(got.features, want.features, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got.dense_dfeat(), want.dense_dfeat(), rtol=1e-12, atol=1e-12)
        assert got.energy == pytest.approx(want.energy, rel=1e-12)
        np.testing.assert_allclose(got.forces, want.forces, rtol=1e-12, atol=1e-12)


class _Boom:
    def __reduce__(self):
        return (pytest.fail, ("the converter unpickled a class outside its allow-list",))


@pytest.mark.parametrize("key", ["0", "length", "feature_scaler"])
def test_other_pickled_classes_are_refused(tmp_path, key):
    from amptorch.data.lmdb_convert import convert_lmdb

    path = tmp_path / "evil.lmdb"
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"length", pickle.dumps(1))
        txn.put(key.encode(), pickle.dumps(_Boom()))
    env.close()
    with pytest.raises(InputError, match="pytest.fail|_pytest"):
        convert_lmdb(path, tmp_path / "new.lmdb")


def test_example_script_lmdb_on_this_package_converts_and_trains(images, tmp_path):
    """The original's 1_construct_lmdb run on this package pickles our records and scalers: convert, then train."""
    from amptorch.data.lmdb_convert import convert_lmdb
    from amptorch.descriptor.GMPOrderNorm import GMPOrderNorm
    from amptorch.preprocessing import AtomsToData, FeatureScaler, TargetScaler
    from amptorch.trainer import AtomsTrainer
    from tests.compat.conftest import config

    descriptor = GMPOrderNorm(MCSHS, ["C", "Cu", "O"])
    data_list = AtomsToData(descriptor, r_energy=True, r_forces=True, save_fps=False).convert_all(images[:6], True)
    scalers = {"feature_scaler": FeatureScaler(data_list, True, {"type": "normalize", "range": (-1, 1)}),
               "target_scaler": TargetScaler(data_list, True)}  # fmt: skip
    env = lmdb.open(str(tmp_path / "data.lmdb"), subdir=False, map_size=1 << 26)
    with env.begin(write=True) as txn:
        for k, do in enumerate(data_list):
            txn.put(str(k).encode(), pickle.dumps(do, protocol=-1))
        for key, value in (*scalers.items(), ("length", len(data_list)),
                           ("descriptor_setup", ("gmpordernorm", MCSHS, "NA", ["C", "Cu", "O"]))):  # fmt: skip
            txn.put(key.encode(), pickle.dumps(value, protocol=-1))
    env.close()
    convert_lmdb(tmp_path / "data.lmdb", tmp_path / "new.lmdb")
    converted = get_lmdb_dataset(str(tmp_path / "new.lmdb"), "no")
    np.testing.assert_array_equal(converted[2].dfeat, data_list[2].dfeat)
    # the original's scripts name the pickled store itself: it is converted into run_dir/converted, once
    cfg = config(None, tmp_path, epochs=1, lmdb_path=[str(tmp_path / "data.lmdb")], cache="partial")
    del cfg["dataset"]["raw_data"], cfg["dataset"]["fp_scheme"], cfg["dataset"]["fp_params"]
    with pytest.warns(UserWarning, match="pickled store of the original AmpTorch; converting"):
        trainer = AtomsTrainer(cfg).train()
    assert np.isfinite(trainer.predict(images[:2])["energy"]).all()
    (cached,) = (tmp_path / "converted").glob("data.lmdb-*.lmdb")
    np.testing.assert_array_equal(get_lmdb_dataset(str(cached), "no")[2].dfeat, data_list[2].dfeat)


def _pickled_store(path, records, setup) -> None:
    """The layout the original's example script writes when run on this package (our DataRecords pickled)."""
    from amptorch.preprocessing import DataRecord

    env = lmdb.open(str(path), subdir=False, map_size=1 << 26)
    with env.begin(write=True) as txn:
        for k, do in enumerate(records):
            txn.put(str(k).encode(), pickle.dumps(DataRecord.of(do), protocol=-1))
        txn.put(b"length", pickle.dumps(len(records)))
        txn.put(b"descriptor_setup", pickle.dumps(setup))
    env.close()


def test_pickled_stores_are_converted_once_per_content(images, tmp_path):
    """``ours``: our stores pass through; a pickled store is converted once, reused while its bytes are the
    same, converted again (and the stale copy removed) when they change."""
    import warnings

    from amptorch.data import write_lmdb
    from amptorch.data.lmdb_convert import ours

    descriptor = GMP.from_amptorch(MCSHS)
    records = featurize(images[:4], descriptor, progress=False)
    setup = ("gmpordernorm", MCSHS, "NA", ["C", "Cu", "O"])
    write_lmdb(tmp_path / "mine.lmdb", records, descriptor, progress=False)
    _pickled_store(tmp_path / "old.lmdb", records[:3], setup)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="converting"):
        first = ours([str(tmp_path / "mine.lmdb"), str(tmp_path / "old.lmdb")], cache)
    assert first[0] == str(tmp_path / "mine.lmdb") and first[1].startswith(str(cache))
    assert len(get_lmdb_dataset(first[1], "no")) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reused: no second conversion
        assert ours(str(tmp_path / "old.lmdb"), cache) == [first[1]]
    (tmp_path / "old.lmdb").unlink()
    _pickled_store(tmp_path / "old.lmdb", records, setup)
    with pytest.warns(UserWarning, match="converting"):
        (second,) = ours(str(tmp_path / "old.lmdb"), cache)
    assert second != first[1] and len(get_lmdb_dataset(second, "no")) == 4
    assert sorted(p.name for p in cache.glob("*.lmdb")) == [second.rsplit("/", 1)[1]]


def test_original_scalers_reload_with_weights_only(images, tmp_path):
    """The original's scripts ``torch.save`` their scalers and ``torch.load`` them (weights_only by default)."""
    from amptorch.descriptor.GMPOrderNorm import GMPOrderNorm
    from amptorch.preprocessing import AtomsToData, FeatureScaler, TargetScaler

    data_list = AtomsToData(GMPOrderNorm(MCSHS, ["C", "Cu", "O"]), r_energy=True, r_forces=True,
                            save_fps=False).convert_all(images[:5], True)  # fmt: skip
    saved = {"feature": FeatureScaler(data_list, True, {"type": "normalize", "range": (0, 1)}),
             "target": TargetScaler(data_list, True)}  # fmt: skip
    torch.save(saved, tmp_path / "normalizers.pt")
    loaded = torch.load(tmp_path / "normalizers.pt", weights_only=True)
    assert loaded == saved and loaded["feature"].transform == "normalize"
    np.testing.assert_array_equal(loaded["feature"].scaler.scale, saved["feature"].scaler.scale)
    assert loaded["target"].baseline.refs.tolist() == saved["target"].baseline.refs.tolist()


def test_debug_run_converts_into_the_temporary_directory(images, tmp_path, monkeypatch):
    """``cmd.debug`` writes nothing under run_dir: the conversion goes to the system's temporary directory."""
    import tempfile

    from amptorch.trainer import AtomsTrainer
    from tests.compat.conftest import config

    descriptor = GMP.from_amptorch(MCSHS)
    _pickled_store(tmp_path / "old.lmdb", featurize(images[:4], descriptor, progress=False),
                   ("gmpordernorm", MCSHS, "NA", ["C", "Cu", "O"]))  # fmt: skip
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    run_dir = tmp_path / "run"
    cfg = config(None, run_dir, epochs=1, lmdb_path=[str(tmp_path / "old.lmdb")])
    del cfg["dataset"]["raw_data"], cfg["dataset"]["fp_scheme"], cfg["dataset"]["fp_params"]
    cfg["cmd"]["debug"] = True
    with pytest.warns(UserWarning, match="converting"):
        AtomsTrainer(cfg).train()
    assert not run_dir.exists()
    assert len(list((tmp_path / "tmp" / "amptorch-converted").glob("old.lmdb-*.lmdb"))) == 1
