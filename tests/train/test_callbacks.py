"""Early stopping, LR schedules, gradient clipping and checkpoint metric: accepted and with effect.

Energy-only training (force_coefficient 0) keeps these fast; the callbacks
do not depend on the force term.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amptorch.train import AtomsTrainer

from .conftest import gmp_config


def _train(images, tmp_path, epochs: int, optim: dict | None = None, cmd: dict | None = None) -> AtomsTrainer:
    optim = {"force_coefficient": 0.0, "batch_size": 8, **(optim or {})}
    cfg = gmp_config(images, tmp_path, epochs=epochs, optim=optim, cmd={"debug": True, **(cmd or {})})
    return AtomsTrainer(cfg).train()


def _params(trainer: AtomsTrainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.potential.model.network.parameters()])


def test_early_stopping_stops_when_nothing_improves(cu_images, tmp_path):
    """lr ~ 0: the monitored MAE improves by less than skorch's threshold, so training stops after
    ``patience`` epochs instead of running all of them."""
    frozen = {"lr": 1e-12}
    stopped = _train(cu_images, tmp_path, 30, frozen, {"early_stopping": True, "early_stopping_patience": 2})
    assert len(stopped.net.history) == 3  # epoch 1 sets the best, 2 and 3 do not improve
    full = _train(cu_images, tmp_path, 5, frozen)
    assert len(full.net.history) == 5


def test_early_stopping_lets_improving_training_run(cu_images, tmp_path):
    trainer = _train(cu_images, tmp_path, 6, {"lr": 1e-2}, {"early_stopping": True, "early_stopping_patience": 5})
    assert len(trainer.net.history) == 6


def test_step_lr_scheduler_changes_lr(cu_images, tmp_path):
    """StepLR(step_size=1, gamma=0.5) halves the learning rate every epoch."""
    trainer = _train(
        cu_images,
        tmp_path,
        4,
        {"lr": 1e-2, "scheduler": {"policy": "StepLR", "params": {"step_size": 1, "gamma": 0.5}}},
    )
    assert trainer.net.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**4)


def test_plateau_scheduler_monitors_the_validation_metric(cu_images, tmp_path):
    """ReduceLROnPlateau: a threshold of 99 % counts no epoch as an improvement, so with patience 0 the
    lr is cut at every epoch after the first."""
    trainer = _train(cu_images, tmp_path, 4, {"lr": 1e-3, "scheduler": {
        "policy": "ReduceLROnPlateau", "params": {"patience": 0, "factor": 0.1, "threshold": 0.99}}})  # fmt: skip
    assert dict(trainer.net.callbacks_)["lr"].monitor == "valid_energy_mae"
    assert trainer.net.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.1**3)


def test_gradient_clipping_bounds_the_updates(cu_images, tmp_path):
    """With SGD each step moves the weights by lr * |clipped gradient| <= lr * max_norm."""
    sgd = {"optimizer": "SGD", "lr": 0.1}
    start = _params(_train(cu_images, tmp_path, 1, {"optimizer": "SGD", "lr": 1e-300}))  # the initial weights
    clipped = _params(_train(cu_images, tmp_path, 2, {**sgd, "gradient_clipping": 1e-4}))
    free = _params(_train(cu_images, tmp_path, 2, sgd))
    n_steps = 2 * 2  # 16 training structures / batch 8, 2 epochs
    assert torch.linalg.norm(clipped - start) <= n_steps * 0.1 * 1e-4 * (1 + 1e-6)
    assert torch.linalg.norm(free - start) > 100 * n_steps * 0.1 * 1e-4


def test_cp_metric_forces_keeps_best_force_epoch(cu_images, tmp_path):
    """cp_metric 'forces': the kept weights are those of the epoch with the lowest validation force MAE."""
    cfg = gmp_config(cu_images, tmp_path, epochs=4, optim={"cp_metric": "forces", "lr": 5e-2},
                     cmd={"debug": True})  # fmt: skip
    trainer = AtomsTrainer(cfg).train()
    maes = trainer.net.history[:, "valid_forces_mae"]
    assert trainer.metrics["best_epoch"] == int(np.argmin(maes)) + 1
    # the kept model's validation force MAE is that epoch's (up to the forward passes' round-off)
    assert trainer.metrics["valid"]["forces_mae"] == pytest.approx(min(maes), rel=1e-8)


def test_cp_metric_energy_keeps_best_energy_epoch(cu_images, tmp_path):
    trainer = _train(cu_images, tmp_path, 4, {"lr": 5e-2})
    maes = trainer.net.history[:, "valid_energy_mae"]
    assert trainer.metrics["best_epoch"] == int(np.argmin(maes)) + 1
    assert trainer.metrics["valid"]["energy_mae"] == pytest.approx(min(maes), rel=1e-8)


def test_logger_writes_tensorboard_events(cu_images, tmp_path):
    """cmd.logger (the original's wandb switch) logs to TensorBoard event files in the run dir."""
    pytest.importorskip("tensorboard")
    cfg = gmp_config(cu_images, tmp_path, epochs=2, optim={"force_coefficient": 0.0}, cmd={"logger": True})
    trainer = AtomsTrainer(cfg).train()
    assert list((trainer.run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_custom_loss_fn_is_used(cu_images, tmp_path):
    """optim.loss_fn replaces the built-in loss: a class is built as the original built CustomLoss."""
    calls = []

    class EnergyMAE(torch.nn.Module):
        def __init__(self, force_coefficient: float = 0.0, loss: str = "mse"):
            super().__init__()
            calls.append(("init", force_coefficient, loss))

        def forward(self, pred, batch):
            calls.append("call")
            n = batch.n_atoms.to(pred["energy"].dtype)
            return ((pred["energy"] - batch.energy.to(pred["energy"].dtype)) / n).abs().mean()

    _train(cu_images, tmp_path, epochs=1, optim={"loss_fn": EnergyMAE, "loss": "mae"})
    assert calls[0] == ("init", 0.0, "mae") and calls.count("call") >= 2

    def broken(pred, batch):
        raise RuntimeError("custom loss reached")

    with pytest.raises(RuntimeError, match="custom loss reached"):
        _train(cu_images, tmp_path, epochs=1, optim={"loss_fn": broken})
