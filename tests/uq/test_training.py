"""An ensemble trained by one call into one checkpoint, training latents stored, and the UQ commands."""

from __future__ import annotations

import json
import shutil

import ase.io
import numpy as np
import pytest
import torch

from amptorch.cli import main
from amptorch.models import AtomisticModel
from amptorch.potential import AmpTorchCalculator, TrainedPotential, errors
from amptorch.testing import make_cu_emt, make_potential
from amptorch.train import AtomsTrainer
from amptorch.train.ensemble import bootstrap_indices

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(images, run_dir, **uq) -> dict:
    fp = {"MCSHs": {"orders": [0, 1, 2], "sigmas": [0.5, 1.0]}, "cutoff": 5.0, "smooth_cutoff": "cosine"}
    return {
        "model": {"name": "singlenn", "num_layers": 2, "num_nodes": 8, "dropout": True, "dropout_rate": 0.1},
        "optim": {"device": "cpu", "force_coefficient": 0.05, "lr": 1e-2, "batch_size": 4, "epochs": 3},
        "dataset": {"raw_data": images, "val_split": 0.25, "fp_scheme": "gmpordernorm", "fp_params": fp,
                    "save_fps": False},
        "cmd": {"run_dir": str(run_dir), "seed": 5, "identifier": "uq", "verbose": False},
        "uq": {"ensemble": 3, "bootstrap": True, "latent": {"k": 2}, "dropout_samples": 6, "ensemble_workers": 0,
               **uq},
    }  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("uq_train")
    images = make_cu_emt(8, seed=1, a=3.61, big_every=0, vacancy_every=0)
    calib = make_cu_emt(12, seed=2, a=3.61, big_every=0, vacancy_every=0)
    test = make_cu_emt(4, seed=3, a=3.61, big_every=0, vacancy_every=0)
    ase.io.write(root / "calib.extxyz", calib)
    ase.io.write(root / "test.extxyz", test)
    return root, images, test


@pytest.fixture(scope="module")
def trained(data):
    root, images, _ = data
    return AtomsTrainer(config(images, root)).train()


def test_one_call_trains_every_member_into_one_checkpoint(trained):
    run = trained.run_dir
    names = {p.name for p in run.iterdir()}
    assert {"model.pt", "meta.json", "config.json", "ensemble.pt", "uq.json", "latent_vectors.npy",
            "latent_numbers.npy", "metrics.json"} <= names and "resume.pt" not in names  # fmt: skip
    state = TrainedPotential.load(run).uq
    ens = state.ensemble
    assert ens.members == 3 and ens.seeds == [5, 6, 7] and ens.bootstrap
    weights = [net.state_dict()["body.0.weight"] for net in ens.networks]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    # member 0 is the run's own model (model.pt)
    assert torch.equal(weights[0], TrainedPotential.load(run).model.network.state_dict()["body.0.weight"])
    assert state.dropout_samples == 6 and state.latent.k == 2
    assert state.latent.n_seen == 6 * 32  # every training atom (6 of 8 structures; val_split 0.25)
    assert set(trained.metrics["member0"]) == {"train", "valid"}
    assert not np.array_equal(bootstrap_indices(6, 5), bootstrap_indices(6, 6))


def _member(pot: TrainedPotential, network) -> TrainedPotential:
    """One member of ``pot``'s ensemble as a potential of its own (the same scaler tables and baseline)."""
    base = pot.model
    model = AtomisticModel(network, base.feature_shift, base.feature_scale, base.energy_refs, base.energy_scale)
    return TrainedPotential(pot.descriptor, model.double(), pot.network)


def test_an_ensemble_checkpoint_predicts_its_members_mean(trained, data):
    """predict, the calculator (fused and training paths) and the run's metrics are the members' mean: energies,
    forces and stress, the same as the ensemble method's prediction; member 0 alone predicts otherwise."""
    _, _, test = data
    pot = TrainedPotential.load(trained.run_dir)
    members = [_member(pot, net) for net in pot.uq.ensemble.networks]
    each = [m.predict(test, stress=True) for m in members]
    plain = pot.predict(test, stress=True)
    for key in ("energy", "forces", "stress"):
        mean = np.mean([e[key] for e in each], axis=0)
        np.testing.assert_allclose(np.asarray(plain[key]), mean, rtol=1e-10, atol=1e-12, err_msg=key)
    assert not np.allclose(plain["energy"], each[0]["energy"], rtol=1e-6)
    with_sigma = pot.uq.predict(test, "ensemble")
    np.testing.assert_allclose(plain["energy"], with_sigma["energy"], rtol=1e-10)
    np.testing.assert_allclose(np.concatenate(plain["forces"]), np.concatenate(with_sigma["forces"]), atol=1e-10)
    np.testing.assert_allclose(trained.predict(test)["energy"], plain["energy"], rtol=1e-10)
    for fused in (True, False):
        atoms = test[1].copy()
        atoms.calc = AmpTorchCalculator(pot, fused=fused)
        assert atoms.get_potential_energy() == pytest.approx(plain["energy"][1], rel=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), plain["forces"][1], atol=1e-9)
        np.testing.assert_allclose(atoms.get_stress(), plain["stress"][1], atol=1e-10)
    # the forces are the mean energy's gradient (central differences through the calculator)
    atoms, h = test[2].copy(), 1e-4
    atoms.calc = AmpTorchCalculator(pot)
    forces = atoms.get_forces()
    for i, c in ((0, 0), (7, 2)):
        e = []
        for step in (h, -h):
            moved = atoms.copy()
            moved.positions[i, c] += step
            moved.calc = AmpTorchCalculator(pot)
            e.append(moved.get_potential_energy())
        assert -(e[0] - e[1]) / (2 * h) == pytest.approx(forces[i, c], abs=1e-6)
    # the run's metrics are what its checkpoint predicts; member 0's are kept beside them
    val = trained._splits[1]
    assert trained.metrics["valid"]["energy_mae"] == pytest.approx(errors(*pot.evaluate_many(val))["energy_mae"],
                                                                   rel=1e-9)  # fmt: skip
    alone = errors(*members[0].evaluate_many(val))
    assert trained.metrics["member0"]["valid"]["energy_mae"] == pytest.approx(alone["energy_mae"], rel=1e-9)


def test_the_mean_follows_the_potential_and_its_files(trained, data, tmp_path):
    """The mean uses model's own tables (changed in place, it changes); a plain potential saved over an
    ensemble checkpoint's directory predicts alone, before and after loading."""
    _, _, test = data
    pot = TrainedPotential.load(trained.run_dir)
    before = np.asarray(pot.predict(test[:2], forces=False)["energy"])
    with torch.no_grad():
        pot.model.energy_refs += 0.5  # eV/atom, every element
    shifted = np.asarray(pot.predict(test[:2], forces=False)["energy"])
    np.testing.assert_allclose(shifted - before, 0.5 * np.array([len(a) for a in test[:2]]), rtol=1e-9)

    target = tmp_path / "copy"
    TrainedPotential.load(trained.run_dir).save(target)  # the ensemble's files come along
    assert TrainedPotential.load(target).uq.ensemble is not None
    alone = _member(pot, pot.uq.ensemble.networks[1])
    own = alone.predict(test, forces=False)["energy"]
    alone.save(target)
    np.testing.assert_allclose(alone.predict(test, forces=False)["energy"], own, rtol=1e-12)
    np.testing.assert_allclose(TrainedPotential.load(target).predict(test, forces=False)["energy"], own, rtol=1e-10)


def test_trainer_predict_with_uncertainty(trained, data):
    _, _, test = data
    loaded = TrainedPotential.load(trained.run_dir).uq
    for method in ("ensemble", "dropout", "latent"):
        loaded.dropout.seed = trained.potential.uq.dropout.seed = 0
        out = trained.predict(test, uncertainty=method)
        ref = loaded.predict(test, method)
        assert len(out["energy_uncertainty"]) == 4 and out["forces_uncertainty"][0].shape == (32,)
        np.testing.assert_allclose(out["energy"], ref["energy"], rtol=1e-10)
        np.testing.assert_allclose(out["energy_uncertainty"], ref["energy_uncertainty"], rtol=1e-10)
        assert out["calibrated"] is False and min(out["energy_uncertainty"]) > 0


def test_uq_commands(trained, data, tmp_path, capsys):
    root, _, _ = data
    run = str(trained.run_dir)
    assert main(["calibrate", run, str(root / "calib.extxyz"), "--method", "ensemble", "--coverage", "0.8"]) == 0
    assert "calibrated 'ensemble' (normalized, coverage 0.8) on 12 structures" in capsys.readouterr().out
    info = json.loads((trained.run_dir / "uq.json").read_text())
    assert info["calibration"]["ensemble"]["energy"]["n"] == 12
    assert info["calibration"]["ensemble"]["forces"]["n"] == 12 * 32 * 3

    out = tmp_path / "pred.extxyz"
    assert main(["predict", run, str(root / "test.extxyz"), "--uncertainty", "ensemble", "--out", str(out)]) == 0
    frames = ase.io.read(out, ":")
    ref = TrainedPotential.load(run).uq.predict(ase.io.read(root / "test.extxyz", ":"), "ensemble")
    assert ref["calibrated"] is True
    for k, frame in enumerate(frames):
        assert frame.info["energy_uncertainty"] == pytest.approx(ref["energy_uncertainty"][k], rel=1e-8)
        np.testing.assert_allclose(frame.arrays["forces_uncertainty"], ref["forces_uncertainty"][k], rtol=1e-8)
        assert frame.get_potential_energy() == pytest.approx(ref["energy"][k], rel=1e-8)
        assert frame.info["uncertainty_calibrated"]

    capsys.readouterr()
    assert main(["predict", run, str(root / "test.extxyz"), "--uncertainty", "ensemble"]) == 0
    assert f"  0: energy {ref['energy'][0]:.6f} eV ± {ref['energy_uncertainty'][0]:.6f} eV (σ)" in (
        capsys.readouterr().out
    )

    capsys.readouterr()
    assert main(["info", run]) == 0
    text = capsys.readouterr().out
    assert "ensemble     3 members (seeds [5, 6, 7]): predictions and the metrics below are their mean" in text
    valid = trained.metrics["valid"]
    assert f"energy MAE {1000 * valid['energy_mae']:.2f} meV/atom" in text
    old = tmp_path / "old"  # written before the mean was the prediction: member 0's metrics, no "member0"
    shutil.copytree(trained.run_dir, old)
    meta = json.loads((old / "meta.json").read_text())
    meta["metrics"].pop("member0")
    (old / "meta.json").write_text(json.dumps(meta))
    assert main(["info", str(old)]) == 0
    assert "predictions are their mean; the metrics below are member 0's" in capsys.readouterr().out

    report = tmp_path / "report"
    capsys.readouterr()
    assert main(["uq-report", run, str(root / "test.extxyz"), "--out", str(report)]) == 0
    text = capsys.readouterr().out
    for method in ("ensemble", "dropout", "latent"):
        assert f"\n{method:<10}energy   " in "\n" + text
        assert (report / f"calibration_{method}.png").stat().st_size > 1000
        assert (report / f"error_vs_sigma_{method}.png").stat().st_size > 1000
    scores = json.loads((report / "uq_report.json").read_text())
    assert scores["ensemble"]["sigma"] == "calibrated" and scores["latent"]["sigma"] == "raw"
    for key in ("coverage_68", "coverage_90", "coverage_95", "half_width_90", "miscalibration_area", "spearman",
                "nll"):  # fmt: skip
        assert np.isfinite(scores["ensemble"]["forces"][key])


def test_uq_command_errors_are_one_line(data, tmp_path, capsys):
    root, images, _ = data
    pot = make_potential("gmp", "singlenn", ("Cu",), fit_to=images[:2])
    pot.save(tmp_path / "plain")
    cases = [
        (["calibrate", str(tmp_path / "plain"), str(root / "calib.extxyz"), "--method", "latent"],
         "stores no training latents"),
        (["calibrate", str(tmp_path / "plain"), str(root / "calib.extxyz"), "--method", "ensemble", "--coverage",
          "1"], "calibrate --coverage: got 1.0"),
        (["predict", str(tmp_path / "plain"), str(root / "test.extxyz"), "--uncertainty", "dropout"],
         "no dropout layers"),
        (["uq-report", str(tmp_path / "plain"), str(root / "test.extxyz")], "has no uncertainty method"),
    ]  # fmt: skip
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_ensemble_run_cannot_resume(data, tmp_path):
    _, images, _ = data
    from amptorch.errors import InputError

    with pytest.raises(InputError, match="an ensemble run \\(uq.ensemble > 1\\) cannot be resumed"):
        AtomsTrainer(config(images, tmp_path)).train(resume=tmp_path)


def test_parallel_members_equal_sequential(data, tmp_path):
    """Members trained in worker processes (one torch thread each) equal those trained one after another; with one
    worker, the main process trains members 0 and 2 and the worker member 1."""
    _, images, _ = data
    seq = AtomsTrainer(config(images, tmp_path / "seq", latent=False)).train()
    par = AtomsTrainer(config(images, tmp_path / "par", latent=False, ensemble_workers=1)).train()
    for a, b in zip(seq.potential.uq.ensemble.networks, par.potential.uq.ensemble.networks, strict=True):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(va, vb, rtol=1e-10, atol=1e-12, msg=k)


def test_recompute_mode_stores_the_latents_of_its_features(data, tmp_path):
    """Recompute mode (geometry records): the training latents come from features computed on access, equal to
    the stored-mode features' latents of the same split."""
    from amptorch.data import featurize
    from amptorch.uq import LatentDistance

    _, images, _ = data
    cfg = config(images[:4], tmp_path, ensemble=1)
    cfg["dataset"].update(features="recompute", val_split=0.0)
    cfg["optim"]["epochs"] = 1
    cfg["model"]["dropout"] = False
    trainer = AtomsTrainer(cfg).train()
    stored = TrainedPotential.load(trainer.run_dir).uq.latent
    pot = trainer.potential
    records = featurize(images[:4], pot.descriptor, derivatives=False, progress=False)
    ref = LatentDistance(k=2, seed=5).fit(pot, records)
    assert stored.n_seen == ref.n_seen == 4 * 32
    order = np.lexsort(stored.latents.T), np.lexsort(ref.latents.T)
    np.testing.assert_allclose(stored.latents[order[0]], ref.latents[order[1]], rtol=1e-5, atol=1e-6)


def test_fine_tuning_keeps_no_state_of_the_old_weights(trained, data, tmp_path):
    """Members, latents and calibrations belong to the loaded weights: a fine-tuned run starts without them."""
    _, images, _ = data
    cfg = config(images, tmp_path, ensemble=1, latent=False)
    cfg["optim"]["epochs"] = 1
    tuner = AtomsTrainer(cfg).load_pretrained(trained.run_dir)
    assert tuner.potential.uq.ensemble is not None
    tuner.train(images)
    assert tuner.run_dir != trained.run_dir
    state = TrainedPotential.load(tuner.run_dir).uq
    assert state.ensemble is None and state.latent is None and not state.calibrations
    assert state.dropout_samples == 6
    assert TrainedPotential.load(trained.run_dir).uq.ensemble is not None  # the old run is left as it was


def test_recompute_mode_ensemble(data, tmp_path):
    """Recompute mode: every member trains through the torch twin, and the ensemble is scored on features."""
    _, images, _ = data
    cfg = config(images[:4], tmp_path, ensemble=2, latent=False)
    cfg["dataset"].update(features="recompute", val_split=0.25)
    cfg["optim"]["epochs"] = 1
    trainer = AtomsTrainer(cfg).train()
    ens = TrainedPotential.load(trainer.run_dir).uq.ensemble
    assert ens.members == 2 and set(trainer.metrics["member0"]) == {"train", "valid"}
    assert trainer.metrics["valid"]["forces_mae"] > 0 and trainer.metrics["member0"]["valid"]["forces_mae"] > 0
    # scored through the twin (geometry records): the members' mean, as a checkpoint's predict gives it
    assert trainer.metrics["valid"] != trainer.metrics["member0"]["valid"]
