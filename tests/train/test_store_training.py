"""Recompute-mode training from a geometry store (issue 11): a sharded or single-file store trains exactly as
the same structures held in memory (float64: the same weights and losses), records read lazily and neighbour
lists built in DataLoader workers; the errors name the config key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amptorch.data import write_lmdb
from amptorch.data.shards import ShardedDataset, build_store
from amptorch.errors import InputError
from amptorch.testing import label_emt, make_cu_emt
from amptorch.train import AtomsTrainer


@pytest.fixture(scope="module")
def cuau():
    """12 EMT-labelled 32-atom cells, one to three Au atoms each (two elements for the baseline)."""
    images = make_cu_emt(12, seed=4, a=3.61, big_every=0, vacancy_every=0)
    for k, atoms in enumerate(images):
        atoms.numbers[: 1 + k % 3] = 79
        label_emt(atoms)
    return images


def config(stress: bool = False, **dataset) -> dict:
    return {
        "model": {"name": "bpnn", "get_forces": True, "hidden_layers": [6, 6]},
        "optim": {"force_coefficient": 0.1, "stress_coefficient": 0.05 if stress else 0.0, "lr": 1e-2,
                  "batch_size": 4, "epochs": 2},
        "dataset": {"val_split": 0.25, "features": "recompute", "save_fps": False,
                    "scaling": {"type": "standardize", "elementwise": True},
                    "fp_params": {"MCSHs": {"orders": [0, 1], "sigmas": [0.5, 1.0]}, "cutoff": 4.5,
                                  "smooth_cutoff": "cosine"}, **dataset},
        "cmd": {"debug": True, "seed": 3, "verbose": False, "dtype": "float64"},
    }  # fmt: skip


def test_store_trains_as_memory(cuau, tmp_path, one_torch_thread):
    build_store(cuau, tmp_path / "store", shard_size=5, workers=0, stress=True)
    write_lmdb(tmp_path / "geo.lmdb", cuau, kind="geometry", stress=True, progress=False)
    # dataset.workers = 2: two DataLoader worker processes read the records and build the neighbour lists (the
    # persistent workers change how the random stream is drawn, so both sides use them)
    memory = AtomsTrainer(config(True, raw_data=cuau, workers=2)).train()
    sharded = AtomsTrainer(config(True, lmdb_path=str(tmp_path / "store"), workers=2)).train()
    single = AtomsTrainer(config(True, lmdb_path=str(tmp_path / "geo.lmdb"), workers=2)).train()
    assert isinstance(sharded._splits[0].source, ShardedDataset) and sharded.net.iterator_train__num_workers == 2
    ref = memory.potential.model
    for other in (sharded, single):
        model = other.potential.model
        for name in ("feature_shift", "feature_scale", "energy_refs"):
            assert torch.equal(getattr(model, name), getattr(ref, name)), name
        for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
            assert float((a - b).abs().max()) <= 1e-10 * max(float(b.abs().max()), 1.0), name
        for key in ("train_loss", "valid_loss"):
            a, b = other.net.history[:, key], memory.net.history[:, key]
            assert np.allclose(a, b, rtol=1e-10, atol=0), key
    assert np.isfinite(sharded.net.history[-1, "train_stress_mae"])


def test_stored_mode_from_a_sharded_feature_store(cuau, tmp_path, one_torch_thread):
    """A sharded store of fingerprints trains as the single-file store of the same records (stored mode)."""
    from amptorch.testing import DESCRIPTORS

    gmp = DESCRIPTORS["gmp"](["Cu", "Au"])
    build_store(cuau[:8], tmp_path / "fps", kind="features", descriptor=gmp, shard_size=3, workers=0)
    write_lmdb(tmp_path / "fps.lmdb", cuau[:8], gmp, progress=False)
    runs = []
    for path in ("fps", "fps.lmdb"):
        cfg = config(lmdb_path=str(tmp_path / path))
        cfg["dataset"]["features"] = "stored"
        runs.append(AtomsTrainer(cfg).train())
    a, b = (r.potential.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].net.history[-1, "train_loss"] == runs[1].net.history[-1, "train_loss"]


def test_errors(cuau, tmp_path):
    build_store(cuau[:4], tmp_path / "store", shard_size=2, workers=0)  # forces, no stress labels
    with pytest.raises(InputError, match="dataset.features: .*is a geometry store .*expected 'recompute'"):
        cfg = config(lmdb_path=str(tmp_path / "store"))
        cfg["dataset"]["features"] = "stored"
        AtomsTrainer(cfg).train()
    with pytest.raises(InputError, match="dataset.lmdb_path: the geometry store .* holds no stress labels"):
        AtomsTrainer(config(True, lmdb_path=str(tmp_path / "store"))).train()
    # a store of fingerprints is still refused in recompute mode, before any data is read
    from amptorch.testing import DESCRIPTORS

    build_store(cuau[:2], tmp_path / "fps", kind="features", descriptor=DESCRIPTORS["gmp"](["Cu", "Au"]),
                workers=0)  # fmt: skip
    with pytest.raises(InputError, match="dataset.features: 'recompute' with dataset.lmdb_path: an LMDB store of"):
        AtomsTrainer(config(lmdb_path=str(tmp_path / "fps")))
