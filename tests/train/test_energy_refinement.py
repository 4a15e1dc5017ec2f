"""``optim.energy_refinement``: after ``optim.epochs``, more epochs with the force coefficient lowered at a constant
learning rate, the optimizer's moments reset once at the switch; resumable inside either phase."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from amptorch.errors import InputError
from amptorch.testing import make_cu_emt
from amptorch.train import AtomsTrainer

from .conftest import gmp_config
from .test_config import _error
from .test_resume import _kill_after, _Killed

EPOCHS, REFINE = 3, 2
BATCHES = 2  # 8 structures, batch 4, no validation split


@pytest.fixture(scope="module")
def images():
    return make_cu_emt(8, seed=11, a=3.61, big_every=0, vacancy_every=0)


def _config(images, run_dir, **refinement) -> dict:
    refine = {"epochs": REFINE, "force_coefficient": 0.002, "lr": 3e-4, **refinement}
    optim = {"batch_size": 4, "force_coefficient": 0.2, "energy_refinement": refine,
             "scheduler": {"policy": "StepLR", "params": {"step_size": 1, "gamma": 0.5}}}  # fmt: skip
    return gmp_config(images, run_dir, epochs=EPOCHS, model={"num_layers": 1, "num_nodes": 5}, optim=optim,
                      dataset={"val_split": 0.0}, cmd={"identifier": "refine"})  # fmt: skip


class _Capture(Callback):
    """The best weights so far and the weights the first refinement batch starts from."""

    def on_batch_begin(self, net, training=False, **kwargs):
        if training and len(net.history) == EPOCHS + 1 and not hasattr(self, "start"):
            best = dict(net.callbacks_)["best"]
            self.best, self.best_epoch = copy.deepcopy(best.best_state), best.best_epoch
            self.start = copy.deepcopy(net.module_.state_dict())

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == EPOCHS:
            self.last = copy.deepcopy(net.module_.state_dict())


def test_the_phase_switches_the_force_weight_the_rate_and_the_moments(images, tmp_path, monkeypatch):
    capture = _Capture()
    original = AtomsTrainer._callbacks
    monkeypatch.setattr(AtomsTrainer, "_callbacks", lambda self, *a: [*original(self, *a), ("capture", capture)])
    cfg = _config(images, tmp_path)
    cfg["optim"]["scheduler"]["params"]["gamma"] = 30.0  # the rate grows: the first phase's best is not its last
    trainer = AtomsTrainer(cfg).train()
    # the refinement starts from the first phase's best weights
    assert capture.best_epoch < EPOCHS
    assert not all(torch.equal(v, capture.last[k]) for k, v in capture.best.items())
    for key, value in capture.best.items():
        assert torch.equal(value, capture.start[key]), key
    history = trainer.net.history
    assert len(history) == EPOCHS + REFINE
    assert history[:, "force_coefficient"] == [0.2] * EPOCHS + [0.002] * REFINE
    optimizer = trainer.net.optimizer_
    assert [g["lr"] for g in optimizer.param_groups] == [3e-4] * len(optimizer.param_groups)
    # Adam's moments restarted at the switch: its step counts only the refinement's batches
    steps = {int(s["step"]) for s in optimizer.state.values()}
    assert steps == {REFINE * BATCHES}
    assert trainer.net.criterion_.coefficients["forces"] == 0.002
    # the metrics log carries the coefficient of each epoch
    rows = (trainer.run_dir / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("force_coefficient")
    assert [float(r.split(",")[column]) for r in rows[1:]] == [0.2] * EPOCHS + [0.002] * REFINE


@pytest.mark.parametrize("killed_after", [EPOCHS - 1, EPOCHS, EPOCHS + 1])
def test_a_run_killed_in_either_phase_resumes_to_the_uninterrupted_result(images, tmp_path, monkeypatch,
                                                                          killed_after):  # fmt: skip
    ref = AtomsTrainer(_config(images, tmp_path / "ref")).train()
    with monkeypatch.context() as m:
        _kill_after(m, killed_after)
        with pytest.raises(_Killed):
            AtomsTrainer(_config(images, tmp_path / "killed")).train()
    run_dir = next((tmp_path / "killed" / "checkpoints").iterdir())
    resumed = AtomsTrainer(_config(images, tmp_path / "killed")).train(resume=run_dir)
    assert resumed.net.history[:, "force_coefficient"] == ref.net.history[:, "force_coefficient"]
    for a, b in zip(resumed.potential.model.state_dict().values(), ref.potential.model.state_dict().values(),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-13)
    # the switch would move with optim.epochs, so they cannot be raised on resume here
    with monkeypatch.context() as m:
        _kill_after(m, 1)
        with pytest.raises(_Killed):
            AtomsTrainer(_config(images, tmp_path / "again")).train()
    cfg = _config(images, tmp_path / "again")
    cfg["optim"]["epochs"] = EPOCHS + 1
    with pytest.raises(InputError, match=r"differs at optim.epochs"):
        AtomsTrainer(cfg).train(resume=next((tmp_path / "again" / "checkpoints").iterdir()))


def test_a_schedule_sized_to_the_first_phase_stops_there(images, tmp_path):
    """OneCycleLR stepped per batch, sized to optim.epochs: it would overrun in the refinement; it stops instead and
    every refinement batch runs at the refinement's rate."""
    cfg = _config(images, tmp_path)
    cfg["optim"]["scheduler"] = {"policy": "OneCycleLR", "params": {"max_lr": 1e-2, "total_steps": EPOCHS * BATCHES,
                                                                     "step_every": "batch"}}  # fmt: skip
    trainer = AtomsTrainer(cfg).train()
    assert len(trainer.net.history) == EPOCHS + REFINE
    lrs = [row["event_lr"] for row in trainer.net.history[:, "batches"][EPOCHS - 1]]
    assert len(lrs) == BATCHES and lrs[-1] < 1e-2  # the schedule ran its course in the first phase
    optimizer = trainer.net.optimizer_
    assert [g["lr"] for g in optimizer.param_groups] == [3e-4] * len(optimizer.param_groups)
    assert int(next(iter(optimizer.state.values()))["step"]) == REFINE * BATCHES


def test_bad_settings_are_one_line_errors(images, tmp_path):
    base = {"model": {"get_forces": True}, "optim": {"force_coefficient": 0.1}}
    assert _error({**base, "optim": {"force_coefficient": 0.1, "energy_refinement": {"epochs": 0}}}).startswith(
        "config optim.energy_refinement.epochs: Input should be greater than or equal to 1"
    )
    assert _error({**base, "optim": {"energy_refinement": {"epochs": 5, "rate": 1}}}).startswith(
        "config optim.energy_refinement.rate: unknown key"
    )
    assert _error({"optim": {"force_coefficient": 0.0, "energy_refinement": {"epochs": 5}}}) == (
        "config optim.energy_refinement: lowers the force coefficient after optim.epochs; expected force training "
        "(model.get_forces and optim.force_coefficient > 0)"
    )
    assert _error({**base, "optim": {"force_coefficient": 0.1, "energy_refinement": {"epochs": 5}},
                   "cmd": {"early_stopping": True}}) == (  # fmt: skip
        "config optim.energy_refinement: a phase after optim.epochs; expected cmd.early_stopping false with it "
        "(early stopping would end the run before the refinement)"
    )
    with pytest.warns(UserWarning, match="cp_metric 'forces': the refinement trades force error"):
        AtomsTrainer({**base, "optim": {"force_coefficient": 0.1, "cp_metric": "forces",
                                        "energy_refinement": {"epochs": 5}}})  # fmt: skip
    msg = _error({**base, "optim": {"force_coefficient": 0.1, "energy_refinement": {"epochs": 5},
                                    "loss_fn": lambda pred, batch: pred["energy"].sum()}})  # fmt: skip
    assert msg.startswith("config optim: energy_refinement: lowers the force coefficient of amptorch's own loss")
