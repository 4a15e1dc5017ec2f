"""The ``amptorch`` command: every subcommand on tiny data, config errors, CLI == Python predictions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml

from amptorch.cli import main
from amptorch.train import AtomsTrainer, TrainedPotential

from .conftest import CONFIG, write_config

COMMANDS = ["train", "featurize", "predict", "md", "info", "demo"]


def one_error_line(capsys_or_capfd) -> str:
    """The captured stderr, checked to be exactly one ``error: ...`` line."""
    err = capsys_or_capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


# ------------------------------------------------------------------- help
def test_entry_point_help():
    exe = shutil.which("amptorch")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "amptorch.cli", "--help"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for name in COMMANDS:
        assert name in res.stdout
    assert "usage: amptorch" in res.stdout and "Units:" in res.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: amptorch {command}")
    assert "--quiet" in out
    if command != "info":
        assert "example" in out or "demo" in out


def test_version_and_usage_errors(capsys):
    assert main(["--version"]) == 0
    assert "amptorch" in capsys.readouterr().out
    assert main([]) == 2  # no command
    assert main(["predict"]) == 2  # missing arguments
    assert main(["bogus"]) == 2
    assert "invalid choice" in capsys.readouterr().err


# ------------------------------------------------------------------ train
def test_train_writes_checkpoint_plots_and_config(checkpoint):
    for name in ("meta.json", "model.pt", "config.json", "metrics.json", "metrics.csv", "parity_train.png",
                 "parity_valid.png"):  # fmt: skip
        assert (checkpoint / name).is_file(), name
    assert (checkpoint / "parity_valid.png").read_bytes()[:4] == b"\x89PNG"
    cfg = json.loads((checkpoint / "config.json").read_text())  # validated and fully defaulted
    assert cfg["optim"]["epochs"] == 3 and cfg["optim"]["lr"] == 1e-2
    assert cfg["dataset"]["raw_data"] == "train.extxyz"
    assert "gradient_clipping" in cfg["optim"] and "early_stopping" in cfg["cmd"]
    metrics = json.loads((checkpoint / "metrics.json").read_text())
    assert metrics["train"]["n_structures"] == 6 and metrics["valid"]["n_structures"] == 2


def test_train_overrides_and_progress(in_workdir, capfd):
    args = ["train", "config.yaml", "optim.epochs=1", "model.num_nodes=4", "optim.lr=5e-3", "cmd.identifier=ovr"]
    assert main(args) == 0
    out, err = capfd.readouterr()
    assert "epoch" in out and "train_energy_mae" in out  # the per-epoch table
    assert "featurizing" in err  # the progress bar
    run = sorted((in_workdir / "runs" / "checkpoints").glob("*-ovr"))[-1]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["optim"]["epochs"] == 1 and cfg["optim"]["lr"] == 5e-3 and cfg["model"]["num_nodes"] == 4


def test_train_quiet(in_workdir, capfd):
    assert main(["-q", "train", "config.yaml", "optim.epochs=1", "cmd.identifier=quiet"]) == 0
    out, err = capfd.readouterr()
    assert err == ""
    assert "epoch" not in out.lower().replace("best epoch", "")
    assert out.startswith("trained in ")


def test_misspelt_key_in_yaml(in_workdir, capsys):
    cfg = json.loads(json.dumps(CONFIG))
    cfg["optim"]["leraning_rate"] = cfg["optim"].pop("lr")
    write_config(in_workdir / "misspelt.yaml", cfg)
    before = set((in_workdir / "runs").rglob("*"))
    assert main(["train", "misspelt.yaml"]) == 2
    line = one_error_line(capsys)
    assert "optim.leraning_rate" in line and "did you mean 'optim.learning_rate'" in line
    assert "optim.lr" in line  # the alias's key
    assert set((in_workdir / "runs").rglob("*")) == before  # nothing started


def test_misspelt_key_override(in_workdir, capsys):
    assert main(["train", "config.yaml", "optim.leraning_rate=1e-3"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: config optim.leraning_rate: unknown key; did you mean 'optim.learning_rate'")
    assert main(["train", "config.yaml", "optimm.lr=1e-3"]) == 2
    assert "did you mean 'optim'" in one_error_line(capsys)
    assert main(["train", "config.yaml", "model.num_nodess=3"]) == 2
    assert "did you mean 'model.num_nodes'" in one_error_line(capsys)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optim.epochs=abc", "config optim.epochs: Input should be a valid integer"),
        ("optim.lr=-1", "config optim.lr: Input should be greater than 0"),
        ("dataset.val_split=1.5", "config dataset.val_split: Input should be less than 1"),
        ("model.name=resnet", "config model.name: Input should be 'bpnn' or 'singlenn'"),
        ("model.num_layers=0", "config model.num_layers: Input should be greater than or equal to 1"),
        ("cmd.dtype=float16", "config cmd.dtype: expected float64"),
        ("model.activation=relux", "config model.activation: unknown activation 'relux'"),
        ("optim.batch_size=[1,2]", "config optim.batch_size: Input should be a valid integer"),
        ("optim=3", "config optim: Input should be a valid dictionary"),
        ("foo", "override 'foo': expected section.key=value"),
        ("optim.lr.x=1", "override 'optim.lr.x=1': optim.lr is a float; expected a mapping"),
        ("optim.lr=[1", "override optim.lr: not valid YAML"),
    ],
)
def test_bad_values(in_workdir, capsys, override, expected):
    assert main(["train", "config.yaml", override]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {expected}"), line


def test_bad_yaml_files(in_workdir, capsys):
    (in_workdir / "list.yaml").write_text("- 1\n- 2\n")
    assert main(["train", "list.yaml"]) == 2
    assert "holds a list; expected a mapping" in one_error_line(capsys)
    (in_workdir / "broken.yaml").write_text("optim: {lr: 1\n")
    assert main(["train", "broken.yaml"]) == 2
    assert "not valid YAML" in one_error_line(capsys)
    assert main(["train", "missing.yaml"]) == 2
    assert one_error_line(capsys) == "error: config: no such file 'missing.yaml'; expected a YAML file"
    (in_workdir / "empty.yaml").write_text("")
    assert main(["train", "empty.yaml"]) == 2  # nothing to train on
    assert "dataset.raw_data: missing" in one_error_line(capsys)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "config.yaml", "dataset.raw_data=missing.extxyz"], "raw_data: no such file 'missing.extxyz'"),
        (["predict", "no_such_run", "test.extxyz"], "checkpoint: no_such_run has no meta.json"),
        (["predict", "{ck}", "missing.extxyz"], "data: no such file 'missing.extxyz'"),
        (["md", "{ck}", "missing.xyz"], "start: no such file 'missing.xyz'"),
        (["md", "no_such_run", "test.extxyz"], "checkpoint: no_such_run has no meta.json"),
        (["md", "{ck}", "test.extxyz", "--steps", "-1"], "md --steps: got -1; expected >= 0"),
        (["md", "{ck}", "test.extxyz", "--timestep", "0"], "md --timestep: got 0.0; expected > 0 fs"),
        (["info", "no_such_run"], "checkpoint: no_such_run has no meta.json"),
        (["featurize", "missing.extxyz", "--out", "x.lmdb"], "data: no such file 'missing.extxyz'"),
        (["featurize", "train.extxyz", "--out", "x.lmdb", "--params", "nope.yaml"], "params: no such file"),
        (["predict", "{ck}", "config.yaml"], "data: could not read 'config.yaml'"),
        (["predict", "{ck}", "test.extxyz", "--batch-size", "0"], "predict --batch-size: got 0; expected >= 1"),
        (["featurize", "train.extxyz", "--out", "x.lmdb", "--workers", "0"], "featurize --workers: got 0"),
        (["demo", "--train", "1"], "demo --train: got 1; expected >= 2"),
    ],
)
def test_missing_files_and_bad_arguments(in_workdir, checkpoint, capsys, argv, expected):
    argv = [a.replace("{ck}", str(checkpoint)) for a in argv]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {expected}"), line


# ---------------------------------------------------------------- predict
def test_predict_out_equals_python(in_workdir, checkpoint, capsys):
    out = in_workdir / "pred.extxyz"
    assert main(["predict", str(checkpoint), "test.extxyz", "--out", str(out), "--stress", "-q"]) == 0
    stdout = capsys.readouterr().out
    assert "errors: energy MAE" in stdout and "stress MAE" in stdout
    images = ase.io.read(in_workdir / "test.extxyz", ":")
    back = ase.io.read(out, ":")
    assert len(back) == len(images) == 3
    py = TrainedPotential.load(checkpoint).predict(images, stress=True)
    trainer = AtomsTrainer().load_pretrained(checkpoint).predict(images, stress=True)
    for k, (a, ref) in enumerate(zip(back, images, strict=True)):
        for p in (py, trainer):
            assert abs(a.get_potential_energy() - p["energy"][k]) <= 1e-12
            np.testing.assert_allclose(a.get_forces(), p["forces"][k], rtol=0, atol=1e-12)
            np.testing.assert_allclose(a.get_stress(), p["stress"][k], rtol=0, atol=1e-12)
            np.testing.assert_allclose(a.get_potential_energies(), p["energies"][k], rtol=0, atol=1e-12)
        # reference labels kept beside the predictions, positions untouched
        assert a.info["ref_energy"] == ref.get_potential_energy()
        np.testing.assert_array_equal(a.arrays["ref_forces"], ref.get_forces())
        np.testing.assert_array_equal(a.info["ref_stress"], ref.get_stress())
        np.testing.assert_array_equal(a.positions, ref.positions)
    metrics = json.loads((in_workdir / "pred_metrics.json").read_text())
    n = np.array([len(a) for a in images])
    e_mae = np.mean(np.abs(np.array(py["energy"]) - [a.get_potential_energy() for a in images]) / n)
    assert metrics["energy_mae"] == pytest.approx(e_mae, rel=1e-12)
    f_mae = np.abs(np.concatenate([f - a.get_forces() for f, a in zip(py["forces"], images, strict=True)])).mean()
    assert metrics["forces_mae"] == pytest.approx(f_mae, rel=1e-12)
    assert metrics["n_structures"] == 3 and "stress_mae" in metrics
    assert (in_workdir / "pred_parity.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_without_labels_or_out(in_workdir, checkpoint, capfd):
    assert main(["predict", str(checkpoint), "nolabels.extxyz", "--out", "nolab.extxyz"]) == 0
    out, err = capfd.readouterr()
    assert "errors:" not in out and not (in_workdir / "nolab_metrics.json").exists()
    assert "featurizing" in err  # progress without --quiet
    assert len(ase.io.read(in_workdir / "nolab.extxyz", ":")) == 3
    # no --out: energies printed, one line per structure; two files in one call
    assert main(["predict", str(checkpoint), "nolabels.extxyz", "test.extxyz", "-q"]) == 0
    out, err = capfd.readouterr()
    assert err == ""
    lines = [ln for ln in out.splitlines() if ln.strip().endswith("eV/atom)")]
    assert len(lines) == 6
    py = TrainedPotential.load(checkpoint).predict(in_workdir / "nolabels.extxyz")
    assert f"energy {py['energy'][0]:.6f} eV" in lines[0]


# --------------------------------------------------------------------- md
@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_md(in_workdir, checkpoint, capfd, ensemble):
    traj = in_workdir / f"{ensemble}.traj"
    argv = ["md", str(checkpoint), "test.extxyz", "--ensemble", ensemble, "--steps", "10", "--interval", "5",
            "--temperature", "400", "--out", str(traj), "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert f"10 steps of 1.0 fs ({ensemble})" in out
    assert "md (" in err  # progress bar
    frames = ase.io.read(traj, ":")
    assert len(frames) == 3  # steps 0, 5, 10
    assert len(frames[0]) == 31  # the last frame of test.extxyz
    assert np.isfinite(frames[-1].get_potential_energy())
    assert not np.allclose(frames[0].positions, frames[-1].positions)


def test_md_quiet_extxyz(in_workdir, checkpoint, capfd):
    out = in_workdir / "md.extxyz"
    assert main(["md", str(checkpoint), "test.extxyz", "--steps", "4", "--interval", "2", "--out", str(out), "-q"]) == 0
    assert capfd.readouterr().err == ""
    frames = ase.io.read(out, ":")
    assert len(frames) == 3 and frames[-1].get_forces().shape == (31, 3)


# ------------------------------------------------------------------- info
def test_info(checkpoint, capsys):
    assert main(["info", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "elements     ['Cu']" in out
    assert "singlenn: hidden layers [8, 8]" in out
    assert "GMP, 9 features" in out
    assert "valid        2 structures" in out
    assert "epochs 3" in out
    assert main(["info", str(checkpoint / "model.pt"), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["network"]["name"] == "singlenn" and meta["metrics"]["train"]["n_structures"] == 6


# -------------------------------------------------------------- featurize
def test_featurize_then_train_from_lmdb(in_workdir, capfd):
    (in_workdir / "params.yaml").write_text(yaml.safe_dump(CONFIG["dataset"]["fp_params"]))
    argv = ["featurize", "train.extxyz", "--out", "fps.lmdb", "--params", "params.yaml", "--workers", "1"]
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert "wrote 8 of 8 structures to fps.lmdb (GMP, 9 features" in out
    assert "lmdb" in err  # progress bar
    assert main([*argv, "-q"]) == 0  # a second run finds the work done
    out, err = capfd.readouterr()
    assert "wrote 8 of 8" in out and err == ""
    from amptorch.data import get_lmdb_dataset

    assert len(get_lmdb_dataset("fps.lmdb")) == 8
    assert main(["train", "config.yaml", "dataset.raw_data=null", "dataset.lmdb_path=fps.lmdb", "optim.epochs=1",
                 "cmd.identifier=lmdb", "-q"]) == 0  # fmt: skip
    assert "trained in" in capfd.readouterr().out


def test_featurize_bad_params(in_workdir, capsys):
    (in_workdir / "badparams.yaml").write_text("fp_params: {}\ncutof: 3\n")
    assert main(["featurize", "train.extxyz", "--out", "bad.lmdb", "--params", "badparams.yaml"]) == 2
    assert "unknown key 'cutof'" in one_error_line(capsys)
    assert not Path(in_workdir / "bad.lmdb").exists()


# ------------------------------------------------------------------- demo
def test_demo_small(tmp_path, capfd):
    argv = ["demo", "--train", "4", "--test", "2", "--epochs", "1", "--run-dir", str(tmp_path), "-q"]
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert out.startswith("test set (2 structures): energy MAE") and err == ""
    assert len(list((tmp_path / "checkpoints").glob("*-demo/model.pt"))) == 1
