"""Config validation: the original's keys and spellings accepted, mistakes named with the nearest key."""

from __future__ import annotations

import pytest
import torch

from amptorch.errors import InputError
from amptorch.train import AtomsTrainer, validate_config

from .conftest import gaussian_config, gmp_config


def _error(config: dict) -> str:
    with pytest.raises(InputError) as info:
        AtomsTrainer(config)
    msg = str(info.value)
    assert "\n" not in msg  # one line
    return msg


@pytest.mark.parametrize(
    "config, path, nearest",
    [
        ({"optim": {"leraning_rate": 1e-3}}, "optim.leraning_rate", "optim.learning_rate"),
        ({"optim": {"lrr": 1e-3}}, "optim.lrr", "optim.lr"),
        ({"optim": {"epoch": 3}}, "optim.epoch", "optim.epochs"),
        ({"model": {"num_layer": 3}}, "model.num_layer", "model.num_layers"),
        ({"dataset": {"fp_shceme": "gaussian"}}, "dataset.fp_shceme", "dataset.fp_scheme"),
        ({"dataset": {"val_splitt": 0.1}}, "dataset.val_splitt", "dataset.val_split"),
        ({"cmd": {"early_stop": True}}, "cmd.early_stop", "cmd.early_stopping"),
        ({"modle": {}}, "modle", "model"),
    ],
)
def test_unknown_key_names_path_and_nearest(config, path, nearest):
    msg = _error(config)
    assert f"config {path}: unknown key" in msg
    assert f"did you mean '{nearest}'" in msg


def test_misspelt_learning_rate_points_at_lr():
    """``learning_rate`` is an alias of ``lr``; the message says so."""
    msg = _error({"optim": {"leraning_rate": 1e-3}})
    assert "'optim.lr'" in msg


@pytest.mark.parametrize(
    "config, path, expected",
    [
        ({"optim": {"lr": -1.0}}, "optim.lr", "greater than 0"),
        ({"optim": {"lr": "fast"}}, "optim.lr", "valid number"),
        ({"optim": {"batch_size": 0}}, "optim.batch_size", "greater than or equal to 1"),
        ({"optim": {"epochs": 2.5}}, "optim.epochs", "integer"),
        ({"optim": {"force_coefficient": -0.1}}, "optim.force_coefficient", "greater than or equal to 0"),
        ({"optim": {"gradient_clipping": 0}}, "optim.gradient_clipping", "greater than 0"),
        ({"optim": {"loss": "huber"}}, "optim.loss", "'mse' or 'mae'"),
        ({"optim": {"optimizer": "Adamm"}}, "optim.optimizer", "did you mean 'Adam'"),
        ({"dataset": {"val_split": 1.5}}, "dataset.val_split", "less than 1"),
        ({"dataset": {"fp_scheme": "acsf"}}, "dataset.fp_scheme", "'gaussian'"),
        ({"dataset": {"scaling": {"type": "minmax"}}}, "dataset.scaling.type", "'normalize' or 'standardize'"),
        ({"model": {"name": "bpn"}}, "model.name", "'bpnn' or 'singlenn'"),
        ({"model": {"num_nodes": 0}}, "model.num_nodes", "greater than or equal to 1"),
        ({"model": {"hidden_layers": [10, 0]}}, "model.hidden_layers", "positive layer widths"),
        ({"model": {"activation": "relu6x"}}, "model.activation", "did you mean 'relu'"),
        ({"model": {"dropout_rate": 1.0}}, "model.dropout_rate", "less than 1"),
        ({"cmd": {"dtype": "float16"}}, "cmd.dtype", "float64"),
        ({"cmd": {"early_stopping_patience": 0}}, "cmd.early_stopping_patience", "greater than or equal to 1"),
        ({"optim": {"scheduler": {"policy": "StepLRR"}}}, "optim.scheduler", "did you mean 'StepLR'"),
        ({"optim": {"scheduler": {"policy": "StepLR", "params": {"step_sizee": 3}}}}, "optim.scheduler",
         "unknown argument 'step_sizee'; did you mean 'step_size'"),
        ({"optim": {"scheduler": {"policy": "StepLR", "params": {}}}}, "optim.scheduler",
         "missing argument 'step_size'"),
        ({"optim": {"optimizer_args": {"weight_decayy": 1e-5}}}, "optim",
         "unknown argument 'weight_decayy'; did you mean 'weight_decay'"),
        ({"optim": {"optimizer_args": True}}, "optim.optimizer_args", "expected a dict of optimizer arguments"),
    ],
)  # fmt: skip
def test_wrong_types_and_ranges(config, path, expected):
    msg = _error(config)
    assert msg.startswith(f"config {path}: ")
    assert expected in msg


def test_fp_params_checked_up_front():
    """Bad fingerprint settings fail when the trainer is made, naming the key path."""
    assert _error({"dataset": {"fp_params": {"MCSH": {"orders": [0]}}}}).startswith(
        "config dataset.fp_params: unknown key 'MCSH'"
    )
    msg = _error({"dataset": {"fp_params": {"MCSHs": {"orders": [0], "sigmas": [1.0]},
                                            "atom_gaussians": {"Cu": "/no/such/Cu.g"}}}})  # fmt: skip
    assert msg.startswith("config dataset.fp_params.atom_gaussians: cannot read /no/such/Cu.g")
    assert _error({"dataset": {"fp_params": "defaults"}}).startswith(
        "config dataset.fp_params: got 'defaults'; expected a mapping of the scheme's settings or 'auto'"
    )
    assert _error({"dataset": {"nn_distance": 0}}).startswith("config dataset.nn_distance: Input should be greater")
    bad_gs = {"default": {"G2": {"etas": [1.0]}}}
    assert "cutoff: missing" in _error({"dataset": {"fp_scheme": "gaussian", "fp_params": bad_gs}})


def test_several_errors_reported_together():
    msg = _error({"optim": {"lrr": 1.0, "epoch": 3}, "dataset": {"fp_shceme": "gmp"}})
    assert "optim.lrr" in msg and "optim.epoch" in msg and "dataset.fp_shceme" in msg


def test_whole_config_validated_before_any_work(monkeypatch, tmp_path):
    """A mistake anywhere fails in AtomsTrainer(config): no data read, nothing featurized or written."""
    import amptorch.train.trainer as trainer_module

    def boom(*args, **kwargs):
        raise AssertionError("work started before validation")

    monkeypatch.setattr(trainer_module, "featurize", boom)
    monkeypatch.setattr(trainer_module, "read_structures", boom)
    config = gmp_config("/no/such/file.extxyz", tmp_path, cmd={"seeed": 1})
    assert "cmd.seeed: unknown key; did you mean 'cmd.seed'" in _error(config)
    assert list(tmp_path.iterdir()) == []


def test_original_spellings_accepted(cu_images, tmp_path):
    """Classes where the original took classes, its 3-p patience key, its dtype tensor types."""
    cfg = gmp_config(cu_images, tmp_path)
    cfg["model"]["activation"] = torch.nn.GELU
    cfg["optim"].update(optimizer=torch.optim.AdamW, loss="MSE", metric="mae", cp_metric="forces", gpus=0,
                        optimizer_args={"optimizer__weight_decay": 1e-6},
                        scheduler={"policy": torch.optim.lr_scheduler.StepLR, "params": {"step_size": 10}})  # fmt: skip
    cfg["dataset"]["scaling"] = {"type": "normalize", "range": (0, 1)}
    cfg["cmd"].update(dtype=torch.DoubleTensor, early_stopping=True, early_stoppping_patience=3)
    c = AtomsTrainer(cfg).config
    assert c.model.activation == "gelu"
    assert c.optim.optimizer == "AdamW" and c.optim.loss == "mse"
    assert c.optim.scheduler == {"policy": "StepLR", "params": {"step_size": 10}}
    assert c.cmd.dtype == "float64" and c.cmd.early_stopping_patience == 3
    assert c.optim.device == "cpu"


def test_defaults_are_the_originals():
    """Defaults as the original's code reads them (API.md), for every config that gives fp_params (all the
    original's did: it required them) or names the original recipe."""
    c = validate_config({"dataset": {"fp_params": {"MCSHs": {}, "cutoff": 5.0}}})
    assert c.cmd.recipe == "original" and validate_config({"cmd": {"recipe": "original"}}) == c.model_copy(
        update={"dataset": c.dataset.model_copy(update={"fp_params": "auto"})})
    assert (c.model.name, c.model.get_forces, c.model.num_layers, c.model.num_nodes) == ("bpnn", True, 5, 20)
    assert (c.model.batchnorm, c.model.dropout, c.model.dropout_rate, c.model.initialization) == (
        False, False, 0.5, "xavier")  # fmt: skip
    assert c.model.activation == "tanh"
    o = c.optim
    assert (o.gpus, o.force_coefficient, o.loss, o.lr, o.batch_size, o.epochs) == (0, 0.0, "mse", 0.1, 32, 100)
    assert (o.optimizer, o.optimizer_args, o.scheduler, o.metric, o.cp_metric) == ("Adam", False, None, "mae",
                                                                                   "energy")  # fmt: skip
    d = c.dataset
    assert (d.cache, d.fp_scheme, d.save_fps, d.val_split, d.val_split_mode) == ("no", "gmpordernorm", True, 0.0,
                                                                                  "cv")  # fmt: skip
    assert d.scaling["type"] == "normalize" and tuple(d.scaling["range"]) == (0, 1) and d.scaling["elementwise"]
    m = c.cmd
    assert (m.debug, m.run_dir, m.identifier, m.seed, m.dtype, m.verbose, m.logger, m.early_stopping) == (
        False, "./", False, 0, "float64", True, False, False)  # fmt: skip
    assert m.early_stopping_patience == 5


def test_gaussian_config_validates(cu_images, tmp_path):
    trainer = AtomsTrainer(gaussian_config(cu_images, tmp_path))
    assert trainer.config.dataset.fp_scheme == "gaussian"
    assert trainer.config.dataset.elements == ["Cu"]


def test_missing_data_at_train_time(tmp_path):
    cfg = gmp_config(None, tmp_path)
    with pytest.raises(InputError, match="dataset.raw_data: missing"):
        AtomsTrainer(cfg).train()


def test_wandb_logger_is_refused_not_ignored():
    with pytest.raises(InputError, match=r"cmd.logger.*wandb is not supported"):
        validate_config({"cmd": {"logger": "wandb"}})
    assert validate_config({"cmd": {"logger": "TensorBoard"}}).cmd.logger == "tensorboard"
