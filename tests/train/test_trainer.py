"""AtomsTrainer end to end: the original's configs train, predict, save and load."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from amptorch.train import AtomsTrainer, TrainedPotential

from .conftest import gaussian_config, gmp_config


def test_original_gmp_config_trains_and_predicts(gmp_run, cu_test_images):
    """The original's S2EF example config trains; predict returns its dict (+ energies, stress)."""
    pred = gmp_run.predict(cu_test_images)
    assert isinstance(pred["energy"], list) and isinstance(pred["forces"], list)
    assert len(pred["energy"]) == len(pred["forces"]) == len(cu_test_images)
    for atoms, e, f, es in zip(cu_test_images, pred["energy"], pred["forces"], pred["energies"], strict=True):
        assert isinstance(e, float) and np.isfinite(e)
        assert f.shape == (len(atoms), 3) and np.isfinite(f).all()
        # per-atom energies sum to the structure energy (eV)
        assert es.shape == (len(atoms),)
        assert es.sum() == pytest.approx(e, rel=1e-10)
    # a trained model is in the right ballpark: EMT Cu32 energies are O(0.1 eV/atom)
    ref = np.array([a.get_potential_energy() / len(a) for a in cu_test_images])
    assert np.abs(np.array(pred["energy"]) / 32 - ref).max() < 0.2

    with_stress = gmp_run.predict(cu_test_images, stress=True)
    assert len(with_stress["stress"]) == len(cu_test_images)
    assert all(s.shape == (6,) and np.isfinite(s).all() for s in with_stress["stress"])
    np.testing.assert_allclose(with_stress["energy"], pred["energy"], rtol=1e-12)


def test_atom_gaussians_file_is_used(gmp_run, cu_gaussians, cu_test_images, tmp_path):
    """``atom_gaussians`` paths (the original's .g files) reach the trained model's descriptor."""
    from amptorch.descriptors import GMP

    atoms = cu_test_images[0]
    trained = gmp_run.potential.descriptor.compute(atoms, False, False, np.float64).features
    params = {"MCSHs": {"orders": [0, 1, 2], "sigmas": [0.5, 1.0, 1.5]}, "cutoff": 6.0}
    # the fixture's file holds the shipped psp_v3 numbers: same features as the default table
    default = GMP.from_amptorch(params).compute(atoms, False, False, np.float64).features
    np.testing.assert_allclose(trained, default, rtol=1e-12)
    # a different file gives different features (so the path is really read)
    lines = Path(cu_gaussians["Cu"]).read_text().splitlines()
    scaled = [f"{2 * float(b)!r} {beta}" for b, beta in (ln.split() for ln in lines if not ln.startswith("!"))]
    other = tmp_path / "Cu_double.g"
    other.write_text("\n".join(scaled) + "\n")
    changed = GMP.from_amptorch({**params, "atom_gaussians": {"Cu": str(other)}})
    assert not np.allclose(changed.compute(atoms, False, False, np.float64).features, trained)


def test_training_decreases_errors(gmp_run):
    """Validation force MAE (eV/Å) and loss fall from epoch 1 to the best epoch."""
    hist = gmp_run.net.history
    assert len(hist) == 8
    first, best = hist[0], min(hist[:, "valid_forces_mae"])
    assert best < 0.9 * first["valid_forces_mae"]
    assert min(hist[:, "train_loss"]) < 0.9 * first["train_loss"]
    # the final metrics are those of the kept (best) model
    assert gmp_run.metrics["valid"]["forces_mae"] < first["valid_forces_mae"]


def test_run_dir_contents(gmp_run):
    """Validated config, weights (weights_only), metrics CSV and parity plots are written."""
    run = gmp_run.run_dir
    assert run is not None and run.is_dir()
    assert run.name.endswith("-test")  # cmd.identifier
    for name in ("config.json", "meta.json", "model.pt", "metrics.csv", "metrics.json",
                 "parity_train.png", "parity_valid.png"):  # fmt: skip
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["optim"]["lr"] == 1e-2 and cfg["model"]["name"] == "singlenn"
    assert cfg["optim"]["optimizer"] == "Adam"  # defaults are filled in
    assert cfg["dataset"]["raw_data"] == "<20 structures>"
    state = torch.load(run / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    assert {"epoch", "train_loss", "valid_loss", "valid_energy_mae", "valid_forces_mae"} <= set(rows[0])
    assert float(rows[0]["valid_forces_mae"]) == pytest.approx(gmp_run.net.history[0, "valid_forces_mae"])
    assert (run / "parity_valid.png").read_bytes()[:4] == b"\x89PNG"


def test_load_reproduces_predictions(gmp_run, cu_test_images):
    """load_pretrained(run_dir) and TrainedPotential.load give exactly the same numbers."""
    ref = gmp_run.predict(cu_test_images, stress=True)
    loaded = AtomsTrainer().load_pretrained(gmp_run.run_dir)
    pot = TrainedPotential.load(gmp_run.run_dir)
    for pred in (loaded.predict(cu_test_images, stress=True), pot.predict(cu_test_images, stress=True)):
        np.testing.assert_array_equal(pred["energy"], ref["energy"])
        for key in ("forces", "energies", "stress"):
            for a, b in zip(pred[key], ref[key], strict=True):
                np.testing.assert_array_equal(a, b)
    # the loaded trainer carries the run's config (get_forces etc.)
    assert loaded.config.model.name == "singlenn"


def test_gaussian_bpnn_config_trains(cu_images, cu_test_images, tmp_path):
    """The original's Gaussian SF ("Gs" dict) + BPNN config trains and reloads exactly."""
    trainer = AtomsTrainer(gaussian_config(cu_images, tmp_path, epochs=4)).train()
    hist = trainer.net.history
    assert len(hist) == 4
    assert min(hist[:, "valid_forces_mae"]) < hist[0, "valid_forces_mae"]
    assert trainer.potential.network["name"] == "bpnn"
    # G2: 4 etas x 1 element, G4: 1 eta x 2 zetas x 2 gammas x 1 pair
    assert trainer.potential.descriptor.length == 8
    # numpy parameters (np.logspace etas, as in the original's example) are stored as JSON numbers
    saved = json.loads((trainer.run_dir / "config.json").read_text())
    etas = saved["dataset"]["fp_params"]["default"]["G2"]["etas"]
    assert isinstance(etas, list)
    np.testing.assert_allclose(etas, np.logspace(np.log10(0.05), np.log10(5.0), num=4))
    pred = trainer.predict(cu_test_images)
    again = AtomsTrainer().load_pretrained(trainer.run_dir).predict(cu_test_images)
    np.testing.assert_array_equal(pred["energy"], again["energy"])
    for a, b in zip(pred["forces"], again["forces"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_debug_mode_predicts_without_run_dir_or_chdir(cu_images, cu_test_images, tmp_path, monkeypatch):
    """cmd.debug: nothing written; predict works (the original's fails); the cwd never changes."""
    monkeypatch.chdir(tmp_path)
    cwd = os.getcwd()
    cfg = gmp_config(cu_images, "runs", epochs=2, cmd={"debug": True})
    trainer = AtomsTrainer(cfg).train()
    assert os.getcwd() == cwd
    assert trainer.run_dir is None
    pred = trainer.predict(cu_test_images)
    assert os.getcwd() == cwd
    assert len(pred["energy"]) == 4 and pred["forces"][0].shape == (32, 3)
    assert list(tmp_path.iterdir()) == []  # no run dir, no fingerprint cache (save_fps False)


def test_run_dir_is_not_entered(cu_images, cu_test_images, tmp_path, monkeypatch):
    """A relative cmd.run_dir holds the checkpoint; unlike the original, no os.chdir into it."""
    monkeypatch.chdir(tmp_path)
    cwd = os.getcwd()
    trainer = AtomsTrainer(gmp_config(cu_images, "runs", epochs=1, optim={"force_coefficient": 0.0})).train()
    assert os.getcwd() == cwd
    assert trainer.run_dir.resolve().parent == (tmp_path / "runs" / "checkpoints").resolve()
    trainer.predict(cu_test_images)
    assert os.getcwd() == cwd


def test_save_fps_caches_fingerprints(cu_images, tmp_path):
    """save_fps writes one fingerprint file per structure under run_dir, reused by a second run."""
    cfg = gmp_config(cu_images[:6], tmp_path, epochs=1, dataset={"save_fps": True, "val_split": 0})
    first = AtomsTrainer(cfg).train()
    cached = sorted(tmp_path.glob("processed/**/*.npz"))
    assert len(cached) == 6
    stamp = [p.stat().st_mtime_ns for p in cached]
    second = AtomsTrainer(cfg).train()
    assert [p.stat().st_mtime_ns for p in cached] == stamp  # read, not rewritten
    np.testing.assert_array_equal(first.predict(cu_images[:2])["energy"], second.predict(cu_images[:2])["energy"])


def test_float32_training(cu_images, cu_test_images, tmp_path):
    """cmd.dtype float32 (original spelling torch.FloatTensor) trains and predicts in float32."""
    cfg = gmp_config(cu_images, tmp_path, epochs=2, cmd={"dtype": torch.FloatTensor, "debug": True})
    trainer = AtomsTrainer(cfg).train()
    assert trainer.potential.dtype == torch.float32
    pred = trainer.predict(cu_test_images)
    assert np.isfinite(pred["energy"]).all()


@pytest.mark.parametrize("cache", ["no", "full"])
def test_lmdb_training(cu_images, cu_test_images, tmp_path, cache, monkeypatch):
    """dataset.lmdb_path (an LMDB made by write_lmdb) trains like raw_data and predicts on Atoms.

    cache "no" streams: records are read from the database every epoch, never all held at once.
    """
    from amptorch.data import write_lmdb
    from amptorch.data.lmdb import LmdbDataset
    from amptorch.descriptors import GMP

    gmp = GMP.from_amptorch({"MCSHs": {"orders": [0, 1, 2], "sigmas": [0.5, 1.0, 1.5]}, "cutoff": 6.0})
    path = tmp_path / "cu.lmdb"
    write_lmdb(path, cu_images, gmp, progress=False, workers=2)
    cfg = gmp_config(None, tmp_path, epochs=3)
    cfg["dataset"] = {"lmdb_path": str(path), "cache": cache, "val_split": 0.2}
    reads = []
    read = LmdbDataset.__getitem__
    monkeypatch.setattr(LmdbDataset, "__getitem__", lambda self, i: reads.append(int(i)) or read(self, i))
    trainer = AtomsTrainer(cfg).train()
    assert trainer.potential.descriptor.hash == gmp.hash
    assert len(trainer.net.history) == 3
    if cache == "no":  # every epoch reads its training records again (plus fits and final errors)
        assert len(reads) >= 3 * 16 + 20
    # same records, same seed and split as raw_data training -> the same model
    raw = AtomsTrainer(gmp_config(cu_images, tmp_path, epochs=3, cmd={"debug": True})).train()
    np.testing.assert_allclose(trainer.predict(cu_test_images)["energy"], raw.predict(cu_test_images)["energy"],
                               rtol=1e-10)  # fmt: skip


def test_predict_latent_and_descriptors(gmp_run, cu_test_images):
    """get_latent / get_descriptor add per-atom latent vectors and fingerprints, as in the original."""
    pred = gmp_run.predict(cu_test_images[:2], get_latent=-2, get_descriptor=True)
    assert [d.shape for d in pred["descriptors"]] == [(32, 9), (32, 9)]
    assert [h.shape for h in pred["latent"]] == [(32, 20), (32, 20)]
    energy_only = gmp_run.predict(cu_test_images[:2], forces=False)
    assert "forces" not in energy_only
    np.testing.assert_allclose(energy_only["energy"], pred["energy"], rtol=1e-12)


def test_inorder_split_validates_on_the_last_frames(cu_images, tmp_path):
    """val_split_mode 'inorder': the last 20 % are the validation set."""
    cfg = gmp_config(cu_images, tmp_path, epochs=1, optim={"force_coefficient": 0.0},
                     dataset={"val_split_mode": "inorder"}, cmd={"debug": True})  # fmt: skip
    trainer = AtomsTrainer(cfg).train()
    assert trainer.metrics["valid"]["n_structures"] == 4
    assert trainer.metrics["train"]["n_structures"] == 16
    # the reported validation error is that of frames 16..19
    pred = trainer.predict(cu_images[16:], forces=False)
    ref = np.array([a.get_potential_energy() for a in cu_images[16:]])
    mae = np.mean(np.abs(np.array(pred["energy"]) - ref) / 32)  # eV/atom
    assert trainer.metrics["valid"]["energy_mae"] == pytest.approx(mae, rel=1e-10)
