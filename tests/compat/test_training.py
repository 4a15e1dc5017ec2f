"""The original's training workflows on our trainer: an LMDB built with AtomsToData and the scalers (full and
partial cache), a custom descriptor set as fp_params, load() without training, and load_pretrained + train
continuing from the loaded weights (fine-tuning)."""

from __future__ import annotations

import numpy as np
import pytest

from amptorch.trainer import AtomsTrainer
from tests.compat.conftest import MCSHS, config, cuco


def energies(trainer, images) -> np.ndarray:
    return np.array(trainer.predict(images)["energy"])


def mae(trainer, images) -> float:
    return float(np.mean(np.abs(energies(trainer, images) - [a.get_potential_energy() for a in images])))


@pytest.mark.parametrize("cache", ["full", "partial"])
def test_lmdb_from_atoms_to_data(images, tmp_path, cache):
    """The original's 1_construct_lmdb + train_lmdb_*_cache examples, with our write_lmdb in place of pickle."""
    from amptorch.data import write_lmdb
    from amptorch.descriptor.GMPOrderNorm import GMPOrderNorm
    from amptorch.preprocessing import AtomsToData, FeatureScaler, TargetScaler

    elements = np.unique([s for a in images for s in a.get_chemical_symbols()])
    descriptor = GMPOrderNorm(MCSHS, elements)
    a2d = AtomsToData(descriptor=descriptor, r_energy=True, r_forces=True, save_fps=False, fprimes=True)
    data_list = [a2d.convert(image, idx=k) for k, image in enumerate(images)]
    feature_scaler = FeatureScaler(data_list, True, {"type": "normalize", "range": (-1, 1)})
    target_scaler = TargetScaler(data_list, True)
    assert feature_scaler.norm(data_list) is data_list and target_scaler.norm(data_list) is data_list
    assert data_list[0].fingerprint.dtype.is_floating_point
    path = str(tmp_path / "data.lmdb")
    write_lmdb(
        path,
        data_list,
        descriptor,
        progress=False,
        metadata={"feature_scaler": feature_scaler.to_dict(), "target_scaler": target_scaler.to_dict()},
    )
    cfg = config(None, tmp_path, epochs=2, lmdb_path=[path], cache=cache, val_split_mode="inorder")
    del cfg["dataset"]["raw_data"], cfg["dataset"]["fp_scheme"], cfg["dataset"]["fp_params"]
    trainer = AtomsTrainer(cfg).train()
    assert np.isfinite(energies(trainer, images[:3])).all()
    assert trainer.potential.descriptor.hash == descriptor.hash


def test_custom_descriptor_set_as_fp_params(images, tmp_path):
    """The original's custom_descriptor_example: fp_params is a GaussianDescriptorSet; reloaded without config."""
    from amptorch.ase_utils import AmpTorch
    from amptorch.descriptor.Gaussian import GaussianDescriptorSet

    gds = GaussianDescriptorSet(np.unique(["Cu", "C", "O"]), 6.0, {"cutoff_func": "cosine"})
    gds.batch_add_descriptors(2, [0.25, 2.5, 0.25, 2.5], [0.0, 0.0, 3.0, 3.0], [])
    gds.batch_add_descriptors(4, [0.005, 0.005, 0.01, 0.01], [1.0, 4.0, 4.0, 16.0], [1.0, 1.0, -1.0, -1.0])
    trainer = AtomsTrainer(config(images, tmp_path, epochs=2, fp_params=gds, val_split=0.25)).train()
    assert trainer.potential.descriptor.length == 36
    assert trainer.config.dataset.fp_scheme == "gaussian"
    again = AtomsTrainer().load_pretrained(trainer.cp_dir)
    np.testing.assert_array_equal(energies(again, images[:4]), energies(trainer, images[:4]))
    atoms = images[0].copy()
    atoms.calc = AmpTorch(trainer)
    assert np.isfinite(atoms.get_potential_energy())


def test_load_builds_without_training(images, tmp_path):
    """The original's consistency_test: load() then net.initialize() and the calculator, no fit."""
    from amptorch.ase_utils import AmpTorch

    trainer = AtomsTrainer(config(images, tmp_path))
    trainer.load()
    trainer.net.initialize()
    assert trainer.cp_dir is not None and (tmp_path / "checkpoints").is_dir()
    atoms = images[1].copy()
    atoms.calc = AmpTorch(trainer)
    assert atoms.get_forces().shape == (3, 3)


def test_load_pretrained_then_train_continues(images, tmp_path):
    """The original's pretrained_test: the loaded weights are the starting point of train()."""
    first = AtomsTrainer(config(images, tmp_path, epochs=3)).train()
    before = energies(first, images)

    same = AtomsTrainer(config(images, tmp_path, epochs=0)).load_pretrained(first.cp_dir)
    np.testing.assert_array_equal(energies(same, images), before)
    same.train()  # zero epochs: the loaded weights, scalers and baseline unchanged
    np.testing.assert_array_equal(energies(same, images), before)
    assert same.potential.meta["fine_tuned_from"] == first.cp_dir

    new = cuco(np.linspace(2.2, 4.8, 10))  # new data: fine-tune on it
    tuned = AtomsTrainer(config(new, tmp_path, epochs=15)).load_pretrained(first.cp_dir)
    start = mae(tuned, new)
    tuned.train(new)
    assert mae(tuned, new) < start
    assert tuned.cp_dir != first.cp_dir

    configless = AtomsTrainer().load_pretrained(first.cp_dir)
    np.testing.assert_array_equal(energies(configless, images), before)
    configless.load(load_dataset=False)  # the original's load_pretrained without config: a net, no data
    configless.net.initialize()
    np.testing.assert_array_equal(energies(configless, images), before)
