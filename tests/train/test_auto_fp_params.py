"""``dataset.fp_params: "auto"`` (the default): the scheme's settings scaled to the training data's
nearest-neighbour distance, resolved once the data is read and recorded wherever the config is saved."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amptorch.cli import main as cli_main
from amptorch.data import write_lmdb
from amptorch.data.lmdb import read_metadata
from amptorch.descriptors import GMP, GaussianSF
from amptorch.descriptors.defaults import gmp_fp_params, gsf_fp_params, nearest_neighbor_distance
from amptorch.errors import InputError
from amptorch.potential import TrainedPotential
from amptorch.testing import make_cu_emt
from amptorch.train import AtomsTrainer
from amptorch.train.plan import Plan

from .conftest import gmp_config
from .test_resume import _kill_after, _Killed


@pytest.fixture(scope="module")
def images():
    return make_cu_emt(8, seed=5, a=3.61, big_every=0, vacancy_every=0)


def _auto_config(images, run_dir, **dataset) -> dict:
    cfg = gmp_config(images, run_dir, epochs=2, model={"num_layers": 1, "num_nodes": 4}, optim={"batch_size": 4})
    del cfg["dataset"]["fp_params"]
    cfg["dataset"].update(dataset)
    return cfg


def test_left_out_fp_params_scale_to_the_data_and_are_saved(images, tmp_path):
    d_nn = round(nearest_neighbor_distance(images), 4)
    assert 2.2 < d_nn < 2.6  # fcc Cu, a = 3.61 Å: a / sqrt(2) = 2.55 Å; the nearest of 12 rattled neighbours
    trainer = AtomsTrainer(_auto_config(images, tmp_path))
    assert trainer.plan.auto
    trainer.train()
    expected = gmp_fp_params(d_nn)
    ds = trainer.config.dataset
    assert (ds.fp_params, ds.nn_distance) == (expected, d_nn)
    assert trainer.potential.descriptor.hash == GMP.from_amptorch(expected).hash
    assert trainer.potential.descriptor.cutoff == pytest.approx(round(2.75 * d_nn, 2))
    saved = json.loads((trainer.run_dir / "config.json").read_text())["dataset"]
    assert (saved["fp_params"], saved["nn_distance"]) == (expected, d_nn)
    loaded = TrainedPotential.load(trainer.run_dir)
    assert loaded.descriptor.hash == trainer.potential.descriptor.hash
    # the whole saved config validates again and trains the same descriptor, without measuring (nn_distance
    # next to the mapping is a record)
    again = Plan.from_config(json.loads((trainer.run_dir / "config.json").read_text()))
    assert not again.auto and again.config.dataset.nn_distance == d_nn
    assert again.descriptor(["Cu"]).hash == loaded.descriptor.hash


def test_a_given_distance_is_resolved_up_front_and_none_means_auto(images, tmp_path):
    plan = Plan.from_config({"dataset": {"fp_params": None, "nn_distance": 3.0}})
    assert not plan.auto and plan.config.dataset.fp_params == gmp_fp_params(3.0)
    assert plan.descriptor(["Cu"]).cutoff == pytest.approx(8.25)
    cfg = _auto_config(images, tmp_path, fp_params="AUTO", nn_distance=3.0)
    trainer = AtomsTrainer(cfg).train()
    assert trainer.config.dataset.nn_distance == 3.0  # not measured
    assert trainer.potential.descriptor.cutoff == pytest.approx(8.25)


def test_gaussian_auto_scales_the_cutoff(images, tmp_path):
    cfg = _auto_config(images, tmp_path, fp_scheme="gaussian")
    cfg["model"]["name"] = "bpnn"
    trainer = AtomsTrainer(cfg).train()
    d_nn = trainer.config.dataset.nn_distance
    assert trainer.config.dataset.fp_params == gsf_fp_params(d_nn)
    assert isinstance(trainer.potential.descriptor, GaussianSF)
    assert trainer.potential.descriptor.cutoff == pytest.approx(round(2.75 * d_nn, 2))


def test_auto_before_the_data_is_read_is_an_error():
    plan = Plan.from_config({})
    with pytest.raises(InputError, match=r"^config dataset.fp_params: 'auto' is not resolved yet"):
        plan.descriptor(["Cu"])
    with pytest.raises(InputError, match=r"^config dataset.fp_params: 'auto' needs the training structures"):
        plan.resolve_fp_params()
    from ase import Atoms

    with pytest.raises(InputError, match=r"^config dataset.fp_params 'auto'.images: no atom has a neighbour"):
        plan.resolve_fp_params([Atoms("H", positions=[[0, 0, 0]])])


def test_resume_keeps_the_runs_own_settings(images, tmp_path, monkeypatch):
    cfg = _auto_config(images, tmp_path, val_split=0.0)
    cfg["optim"]["epochs"] = 3
    ref = AtomsTrainer(cfg).train()
    killed_dir = tmp_path / "killed"
    cfg2 = _auto_config(images, killed_dir, val_split=0.0)
    cfg2["optim"]["epochs"] = 3
    with monkeypatch.context() as m:
        _kill_after(m, 1)
        with pytest.raises(_Killed):
            AtomsTrainer(cfg2).train()
    run_dir = next((killed_dir / "checkpoints").iterdir())
    # the package's defaults could change between the kill and the resume: the run's own settings are kept
    saved = json.loads((run_dir / "config.json").read_text())
    sigmas = saved["dataset"]["fp_params"]["MCSHs"]["sigmas"]
    saved["dataset"]["fp_params"]["MCSHs"]["sigmas"] = [round(1.01 * s, 3) for s in sigmas]
    (run_dir / "config.json").write_text(json.dumps(saved))
    resumed = AtomsTrainer(cfg2).train(resume=run_dir)
    assert resumed.config.dataset.fp_params == saved["dataset"]["fp_params"]
    assert resumed.potential.descriptor.hash == GMP.from_amptorch(saved["dataset"]["fp_params"]).hash
    # untouched, the resumed run ends as the uninterrupted one
    with monkeypatch.context() as m:
        _kill_after(m, 1)
        with pytest.raises(_Killed):
            AtomsTrainer(cfg2).train()
    run_dir2 = sorted((killed_dir / "checkpoints").iterdir())[-1]
    resumed = AtomsTrainer(cfg2).train(resume=run_dir2)
    for a, b in zip(
        resumed.potential.model.state_dict().values(), ref.potential.model.state_dict().values(), strict=True
    ):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
    # a different given distance is a different config
    cfg3 = _auto_config(images, killed_dir, val_split=0.0, nn_distance=2.0)
    with pytest.raises(InputError, match=r"differs at dataset.fp_params, dataset.nn_distance"):
        AtomsTrainer(cfg3).train(resume=run_dir2)


def test_geometry_store_measures_the_same_distance(images, tmp_path):
    store = tmp_path / "geometry.lmdb"
    write_lmdb(store, images, kind="geometry", progress=False)
    cfg = _auto_config(None, tmp_path, raw_data=None, lmdb_path=str(store), features="recompute")
    trainer = AtomsTrainer(cfg).train()
    assert trainer.config.dataset.nn_distance == round(nearest_neighbor_distance(images), 4)


def test_featurize_without_params_uses_auto(images, tmp_path, capsys):
    from ase.io import write

    data = tmp_path / "cu.extxyz"
    write(data, images)
    out = tmp_path / "fp.lmdb"
    assert cli_main(["featurize", str(data), "--out", str(out), "--quiet"]) == 0
    d_nn = round(nearest_neighbor_distance(images), 4)
    assert f"fp_params 'auto' (nearest-neighbour distance {d_nn:g} Å)" in capsys.readouterr().out
    assert read_metadata(out)["descriptor_hash"] == GMP.from_amptorch(gmp_fp_params(d_nn)).hash
