"""Training settings that must be finite and runs that diverge (train/config.py, net.py, callbacks.py,
trainer.py), and config files with duplicate keys or bad names (cli.py load_yaml, train/config.py)."""

from __future__ import annotations

import math

import ase.io
import numpy as np
import pytest
import torch
import yaml

from amptorch.cli import load_yaml, main
from amptorch.errors import InputError
from amptorch.testing import make_cu_emt
from amptorch.train import AtomsTrainer, TrainedPotential, validate_config
from amptorch.train.callbacks import BestWeights
from amptorch.train.net import TrainingDiverged

from .conftest import one_line

FP = {"MCSHs": {"orders": [0, 1], "sigmas": [0.5, 1.0]}, "cutoff": 5.0, "smooth_cutoff": "cosine"}


def config(run_dir, images, **optim) -> dict:
    return {
        "model": {"name": "singlenn", "num_layers": 2, "num_nodes": 8},
        "optim": {"force_coefficient": 0.1, "lr": 1e-2, "batch_size": 2, "epochs": 4, **optim},
        "dataset": {"raw_data": images, "fp_params": FP, "save_fps": False},
        "cmd": {"run_dir": str(run_dir), "identifier": "h", "seed": 1, "verbose": False},
    }


@pytest.fixture(scope="module")
def images():
    return make_cu_emt(4, seed=0, a=3.61, big_every=0, vacancy_every=0)


# ------------------------------------------------------------------ config values
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize(
    "section, key",
    [
        ("optim", "lr"),
        ("optim", "force_coefficient"),
        ("optim", "stress_coefficient"),
        ("optim", "gradient_clipping"),
        ("model", "dropout_rate"),
        ("dataset", "val_split"),
    ],
)
def test_non_finite_settings_are_refused(section, key, value):
    with pytest.raises(InputError) as info:
        validate_config({section: {key: value}})
    one_line(info.value, f"config {section}.{key}", "finite number")


def test_non_finite_nested_settings_are_refused():
    with pytest.raises(InputError) as info:
        validate_config({"dataset": {"cutoff_params": {"cutoff_func": "polynomial", "gamma": math.inf}}})
    one_line(info.value, "config dataset.cutoff_params.gamma", "finite")
    with pytest.raises(InputError) as info:
        validate_config({"dataset": {"scaling": {"type": "normalize", "range": [0, math.inf]}}})
    one_line(info.value, "config dataset.scaling.range", "finite")


def test_yaml_inf_is_refused(tmp_path):
    """``optim.lr: .inf`` in a YAML file (read as a float) fails validation, as does the override."""
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: .inf\n")
    with pytest.raises(InputError) as info:
        validate_config(load_yaml(path))
    one_line(info.value, "config optim.lr", "finite")


@pytest.mark.parametrize(
    "symbols, parts",
    [
        (["Xx"], ("config dataset.elements", "'Xx'", "did you mean")),
        (["cu"], ("config dataset.elements", "'cu'", "did you mean 'Cu'")),
        (["Cu", "X"], ("config dataset.elements", "'X'")),
        (["Cu", "Cu"], ("config dataset.elements", "'Cu' is given twice")),
    ],
)
def test_element_symbols(symbols, parts):
    with pytest.raises(InputError) as info:
        validate_config({"dataset": {"elements": symbols}})
    one_line(info.value, *parts)
    assert validate_config({"dataset": {"elements": ["Cu", "H", "Og"]}}).dataset.elements == ["Cu", "H", "Og"]


@pytest.mark.parametrize("value", ["../../x", "..", "a/b", "/abs", "a\\b", "C:\\x", " "])
def test_identifier_is_one_path_component(value):
    with pytest.raises(InputError) as info:
        validate_config({"cmd": {"identifier": value}})
    one_line(info.value, "config cmd.identifier", "one folder name")


@pytest.mark.parametrize("value", ["../x", "a/../../b", "/tmp/x", "C:\\x", "\\\\server\\share"])
def test_fps_dir_is_relative_inside_the_run(value):
    with pytest.raises(InputError) as info:
        validate_config({"dataset": {"fps_dir": value}})
    one_line(info.value, "config dataset.fps_dir", "relative folder")


def test_good_names_still_pass():
    cfg = validate_config({"cmd": {"identifier": "run-1.b"}, "dataset": {"fps_dir": "cache/fps"}})
    assert cfg.cmd.identifier == "run-1.b" and cfg.dataset.fps_dir == "cache/fps"
    assert validate_config({"cmd": {"identifier": False}}).cmd.identifier is False


# ------------------------------------------------------------------ duplicate YAML keys
def test_duplicate_yaml_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  epochs: 3\n  lr: 2e-3\nmodel: {}\n")
    with pytest.raises(InputError) as info:
        load_yaml(path)
    one_line(info.value, str(path), "key 'lr' is given twice", "lines 2 and 4")
    path.write_text("optim: {lr: 1e-3}\ncmd: {}\noptim: {epochs: 2}\n")
    with pytest.raises(InputError) as info:
        load_yaml(path)
    one_line(info.value, "key 'optim' is given twice", "lines 1 and 3")
    # merge keys are not duplicates: an explicit key overrides a merged one, as YAML says
    path.write_text("base: &b {lr: 1e-3}\noptim:\n  <<: *b\n  lr: 2e-3\n")
    assert load_yaml(path)["optim"] == {"lr": 2e-3}


def test_duplicate_yaml_keys_from_the_cli(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  lr: 2e-3\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "key 'lr' is given twice (lines 2 and 3)" in err[0]


# ------------------------------------------------------------------ divergence
def finite_state(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_huge_lr_stops_with_a_clear_error(images, tmp_path):
    trainer = AtomsTrainer(config(tmp_path, images, lr=1e6))
    with pytest.raises(TrainingDiverged) as info:
        trainer.train()
    assert isinstance(info.value, InputError)
    one_line(info.value, "config optim.lr", "training diverged at epoch 1", "lower lr (now 1e+06)")
    assert not (trainer.run_dir / "model.pt").exists()  # no best epoch was ever finished


def test_nan_loss_stops_and_keeps_the_finite_best(images, tmp_path):
    """A loss that becomes NaN in epoch 2: training stops there; the epoch-1 checkpoint stays finite."""
    calls = {"n": 0}

    def loss_fn(pred, batch):
        calls["n"] += 1
        d = pred["energy"] - batch.energy.to(pred["energy"].dtype)
        loss = (d * d).mean()
        return loss * math.nan if calls["n"] >= 3 else loss

    trainer = AtomsTrainer(config(tmp_path, images, loss_fn=loss_fn))
    with pytest.raises(TrainingDiverged) as info:
        trainer.train()
    one_line(info.value, "training diverged at epoch 2", "the loss is nan")
    assert finite_state(trainer.potential.model.state_dict())  # the best weights, back in memory
    loaded = TrainedPotential.load(trainer.run_dir)
    assert finite_state(loaded.model.state_dict())
    assert np.isfinite(loaded.predict(images[:1])["energy"]).all()


def test_best_weights_never_keeps_non_finite_weights():
    saved = []

    class Net:
        history = [{"epoch": 1, "valid_loss_best": True}]
        module_ = torch.nn.Linear(2, 1)

    with torch.no_grad():
        Net.module_.weight[0, 0] = math.nan
    cb = BestWeights("valid_loss_best", save=saved.append)
    cb.on_train_begin(Net)
    cb.on_epoch_end(Net)
    assert cb.best_state is None and saved == [] and "event_cp" not in Net.history[-1]


def test_diverging_cli_run_exits_2(images, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ase.io.write(tmp_path / "train.extxyz", images)
    cfg = config("runs", "train.extxyz")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "c.yaml", "optim.lr=1e6", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "training diverged" in err[0], err
