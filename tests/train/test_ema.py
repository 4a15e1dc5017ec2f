"""``optim.ema_decay``: an exponential moving average of the weights is what each epoch is scored and kept with,
while the optimizer goes on from its own weights; resumable; restarted at the energy refinement's switch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from amptorch.potential import errors
from amptorch.testing import make_cu_emt
from amptorch.train import AtomsTrainer

from .conftest import gmp_config
from .test_config import _error
from .test_resume import _kill_after, _Killed

EPOCHS, DECAY = 4, 0.7


@pytest.fixture(scope="module")
def images():
    return make_cu_emt(10, seed=5, a=3.61, big_every=0, vacancy_every=0)


def _config(images, run_dir, val_split: float = 0.3, **optim) -> dict:
    optim = {"batch_size": 3, "force_coefficient": 0.2, "lr": 3e-2, "ema_decay": DECAY, **optim}
    return gmp_config(images, run_dir, epochs=EPOCHS, model={"num_layers": 1, "num_nodes": 5}, optim=optim,
                      dataset={"val_split": val_split}, cmd={"identifier": "ema"})  # fmt: skip


class _Shadow(Callback):
    """An independent EMA of the optimizer's weights (after every step), and what each epoch saw."""

    def on_train_begin(self, net, **kwargs):
        self.avg = copy.deepcopy(net.module_.state_dict())
        self.steps, self.epoch_avg, self.epoch_raw, self.epoch_start = 0, [], [], []

    def _raw(self, net) -> dict:
        return {k: v.detach().clone() for k, v in net.module_.named_parameters()}

    def on_batch_begin(self, net, training=False, **kwargs):
        if training and len(self.epoch_start) < len(net.history):  # an epoch's first step starts from these
            self.epoch_start.append(self._raw(net))

    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        self.steps += 1
        d = min(DECAY, (1 + self.steps) / (10 + self.steps))
        for k, v in self._raw(net).items():
            self.avg[k] = d * self.avg[k] + (1 - d) * v

    def on_epoch_end(self, net, **kwargs):  # (placed after "ema": the optimizer's weights are back)
        self.epoch_avg.append({k: self.avg[k].clone() for k, _ in net.module_.named_parameters()})
        self.epoch_raw.append(self._raw(net))


def _with_shadow(monkeypatch) -> _Shadow:
    shadow = _Shadow()
    original = AtomsTrainer._callbacks
    monkeypatch.setattr(AtomsTrainer, "_callbacks", lambda self, *a: [*original(self, *a), ("shadow", shadow)])
    return shadow


def _close(a: dict, b: dict) -> None:
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-10, atol=1e-13, err_msg=key)


def test_the_average_is_scored_and_kept_and_training_goes_on_from_the_raw_weights(images, tmp_path, monkeypatch):
    shadow = _with_shadow(monkeypatch)
    trainer = AtomsTrainer(_config(images, tmp_path)).train()
    history = trainer.net.history
    best = trainer.metrics["best_epoch"]
    # the final model is the average at the best epoch (not that epoch's optimizer weights)
    final = dict(trainer.potential.model.named_parameters())
    _close({k: v.detach() for k, v in final.items()}, shadow.epoch_avg[best - 1])
    assert not all(torch.allclose(shadow.epoch_raw[best - 1][k], v) for k, v in shadow.epoch_avg[best - 1].items())
    # each epoch starts from the previous epoch's optimizer weights, not from the average
    for epoch in range(1, EPOCHS):
        _close(shadow.epoch_start[epoch], shadow.epoch_raw[epoch - 1])
    # the validation errors in the history are the averaged weights' ones
    val = trainer._splits[1]
    pred = trainer.potential.evaluate_many(val)
    err = errors(*pred)
    np.testing.assert_allclose(err["energy_mae"], history[best - 1, "valid_energy_mae"], rtol=1e-9)
    np.testing.assert_allclose(err["forces_mae"], history[best - 1, "valid_forces_mae"], rtol=1e-9)


def test_without_a_validation_split_the_training_set_score_is_the_averages(images, tmp_path, monkeypatch):
    shadow = _with_shadow(monkeypatch)
    trainer = AtomsTrainer(_config(images, tmp_path, val_split=0.0)).train()
    best = trainer.metrics["best_epoch"]
    _close({k: v.detach() for k, v in trainer.potential.model.named_parameters()}, shadow.epoch_avg[best - 1])
    err = errors(*trainer.potential.evaluate_many(trainer._splits[0]))
    np.testing.assert_allclose(err["energy_mae"], trainer.net.history[best - 1, "train_eval_energy_mae"], rtol=1e-9)


def test_a_killed_run_resumes_to_the_uninterrupted_result(images, tmp_path, monkeypatch):
    ref = AtomsTrainer(_config(images, tmp_path / "ref")).train()
    with monkeypatch.context() as m:
        _kill_after(m, 2)
        with pytest.raises(_Killed):
            AtomsTrainer(_config(images, tmp_path / "killed")).train()
    run_dir = next((tmp_path / "killed" / "checkpoints").iterdir())
    state = torch.load(run_dir / "resume.pt", weights_only=True)
    assert state["ema"]["updates"] == 2 * 3  # 7 training structures in batches of 3, two epochs
    resumed = AtomsTrainer(_config(images, tmp_path / "killed")).train(resume=run_dir)
    assert resumed.net.history[:, "valid_energy_mae"] == pytest.approx(ref.net.history[:, "valid_energy_mae"],
                                                                       rel=1e-10)  # fmt: skip
    _close(resumed.potential.model.state_dict(), ref.potential.model.state_dict())


def test_the_refinement_restarts_the_average_from_the_best_weights(images, tmp_path, monkeypatch):
    class _AtSwitch(Callback):
        def on_batch_begin(self, net, training=False, **kwargs):
            if training and len(net.history) == EPOCHS + 1 and not hasattr(self, "average"):
                self.best = copy.deepcopy(dict(net.callbacks_)["best"].best_state)
                ema = dict(net.callbacks_)["ema"]
                self.average, self.updates = [t.clone() for t in ema.average], ema.updates

    switch = _AtSwitch()
    original = AtomsTrainer._callbacks
    monkeypatch.setattr(AtomsTrainer, "_callbacks", lambda self, *a: [*original(self, *a), ("switch", switch)])
    cfg = _config(images, tmp_path, energy_refinement={"epochs": 2, "force_coefficient": 0.01, "lr": 1e-3})
    trainer = AtomsTrainer(cfg).train()
    assert switch.updates == 0
    names = [k for k, _ in trainer.potential.model.named_parameters()]
    for name, value in zip(names, switch.average, strict=True):
        assert torch.equal(value, switch.best[name]), name


def test_bad_decays_are_one_line_errors():
    for bad, expected in ((1.0, "less than 1"), (0.0, "greater than 0"), ("fast", "valid number")):
        msg = _error({"optim": {"ema_decay": bad}})
        assert msg.startswith("config optim.ema_decay:") and expected in msg, msg


def test_a_restored_average_takes_the_parameters_device_and_dtype():
    """resume.pt is read onto the CPU in float64; the average goes where the parameters are (here float32)."""
    from types import SimpleNamespace

    from amptorch.train.callbacks import WeightAverage

    module = torch.nn.Linear(3, 2).float()
    ema = WeightAverage(0.9)
    saved = {"average": [torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)], "updates": 7}
    ema.load_state(saved, SimpleNamespace(module_=module))
    assert [t.dtype for t in ema.average] == [torch.float32, torch.float32] and ema.updates == 7
    assert ema.average[0].device == module.weight.device and torch.equal(ema.average[0], torch.ones(2, 3))
    ema.on_batch_end(SimpleNamespace(module_=module), training=True)  # a step mixes them without a type error
