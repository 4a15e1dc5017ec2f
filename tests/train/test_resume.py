"""A killed training run resumes from its last finished epoch and ends exactly as an uninterrupted run."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from amptorch.errors import InputError
from amptorch.potential import TrainedPotential
from amptorch.testing import make_cu_emt
from amptorch.train import AtomsTrainer
from amptorch.train.callbacks import RESUME_FILE

from .conftest import gmp_config

EPOCHS = 6


class _Killed(RuntimeError):
    pass


class _KillAfter(Callback):
    """Stops training after ``epoch`` epochs without the normal end (after resume.pt is written)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise _Killed(f"killed after epoch {self.epoch}")


@pytest.fixture(scope="module")
def images():
    return make_cu_emt(12, seed=3, a=3.61, big_every=0, vacancy_every=0)


def _config(images, run_dir, val_split: float, epochs: int = EPOCHS) -> dict:
    optim = {"batch_size": 3, "epochs": epochs}
    cmd = {"identifier": "resume"}
    if val_split:  # a schedule and early stopping carry state over the kill too
        optim["scheduler"] = {"policy": "StepLR", "params": {"step_size": 2, "gamma": 0.7}}
        cmd.update(early_stopping=True, early_stopping_patience=50)
    return gmp_config(images, run_dir, epochs=epochs, model={"num_layers": 1, "num_nodes": 6},
                      optim=optim, dataset={"val_split": val_split}, cmd=cmd)  # fmt: skip


def _metrics_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: v for k, v in row.items() if k != "dur"} for row in rows]


def _kill_after(monkeypatch, epoch: int) -> None:
    original = AtomsTrainer._callbacks

    def callbacks(self, has_val, save):
        return [*original(self, has_val, save), ("kill", _KillAfter(epoch))]

    monkeypatch.setattr(AtomsTrainer, "_callbacks", callbacks)


@pytest.mark.parametrize("val_split", [0.0, 0.25])
def test_killed_run_resumes_to_the_uninterrupted_result(images, tmp_path, monkeypatch, val_split):
    ref = AtomsTrainer(_config(images, tmp_path / "ref", val_split)).train()
    assert not (ref.run_dir / RESUME_FILE).exists()  # a finished run keeps no resume state

    with monkeypatch.context() as m:
        _kill_after(m, 2)
        killed = AtomsTrainer(_config(images, tmp_path / "killed", val_split))
        with pytest.raises(_Killed):
            killed.train()
    run_dir = killed.run_dir
    state = torch.load(run_dir / RESUME_FILE, weights_only=True)
    assert state["epoch"] == 2 and len(_metrics_rows(run_dir)) == 2
    with open(run_dir / "metrics.csv", "a") as fh:  # as a kill after the next epoch's row, before its resume.pt
        fh.write("3,0.25,")
    # a second kill after the resumed run's fourth epoch, then a resume to the end
    with monkeypatch.context() as m:
        _kill_after(m, 4)
        with pytest.raises(_Killed):
            AtomsTrainer(_config(images, tmp_path / "killed", val_split)).train(resume=run_dir)
    assert torch.load(run_dir / RESUME_FILE, weights_only=True)["epoch"] == 4
    resumed = AtomsTrainer(_config(images, tmp_path / "killed", val_split)).train(resume=str(run_dir))
    assert resumed.run_dir == run_dir and not (run_dir / RESUME_FILE).exists()

    for a, b in zip(ref.net.module_.state_dict().values(), resumed.net.module_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert resumed.metrics["best_epoch"] == ref.metrics["best_epoch"]
    for split in ("train", "valid"):
        assert (split in resumed.metrics) == (split in ref.metrics)
        for key, value in ref.metrics.get(split, {}).items():
            np.testing.assert_allclose(resumed.metrics[split][key], value, rtol=1e-10, err_msg=f"{split} {key}")
    saved_ref, saved = TrainedPotential.load(ref.run_dir), TrainedPotential.load(run_dir)
    for a, b in zip(saved_ref.model.state_dict().values(), saved.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    rows_ref, rows = _metrics_rows(ref.run_dir), _metrics_rows(run_dir)
    assert len(rows) == len(rows_ref) == EPOCHS and rows[0].keys() == rows_ref[0].keys()
    for r, s in zip(rows_ref, rows, strict=True):
        for key, value in r.items():
            if value in ("True", "False", ""):
                assert s[key] == value, key
            else:
                assert float(s[key]) == pytest.approx(float(value), rel=1e-10, abs=1e-14), key
    hist_ref = [{k: v for k, v in row.items() if k not in ("dur", "batches")} for row in ref.net.history]
    hist = [{k: v for k, v in row.items() if k not in ("dur", "batches")} for row in resumed.net.history]
    assert [sorted(r) for r in hist] == [sorted(r) for r in hist_ref]
    assert [r.get("event_cp") for r in hist] == [r.get("event_cp") for r in hist_ref]


def test_resume_refuses_what_it_cannot_resume(images, tmp_path, monkeypatch):
    done = AtomsTrainer(_config(images, tmp_path, 0.0, epochs=1)).train()
    with pytest.raises(InputError, match="finished"):
        AtomsTrainer(_config(images, tmp_path, 0.0, epochs=1)).train(resume=done.run_dir)
    (done.run_dir / "metrics.json").unlink()  # as a run killed before its first epoch ended
    with pytest.raises(InputError, match="start it again"):
        AtomsTrainer(_config(images, tmp_path, 0.0, epochs=1)).train(resume=done.run_dir)
    with monkeypatch.context() as m:
        _kill_after(m, 1)
        killed = AtomsTrainer(_config(images, tmp_path, 0.0, epochs=3))
        with pytest.raises(_Killed):
            killed.train()
    other = _config(images, tmp_path, 0.0, epochs=3)
    other["optim"]["lr"] = 0.5
    with pytest.raises(InputError, match="optim.lr"):
        AtomsTrainer(other).train(resume=killed.run_dir)
    with pytest.raises(InputError, match="optim.epochs"):  # fewer epochs than done
        AtomsTrainer(_config(images, tmp_path, 0.0, epochs=0)).train(resume=killed.run_dir)
    with pytest.raises(InputError, match="no config.json"):
        AtomsTrainer(_config(images, tmp_path, 0.0, epochs=3)).train(resume=tmp_path / "nowhere")
    # epochs may be raised: the run goes on to the new count
    more = AtomsTrainer(_config(images, tmp_path, 0.0, epochs=4)).train(resume=killed.run_dir)
    assert len(more.net.history) == 4 and len(_metrics_rows(killed.run_dir)) == 4


def test_cli_resume(images, tmp_path, monkeypatch, capsys):
    """``amptorch train CONFIG --resume RUN_DIR`` (overrides before it) goes on with a killed run; a finished run
    is one ``error:`` line (exit status 2)."""
    import ase.io
    import yaml

    from amptorch.cli import main

    data = tmp_path / "data.extxyz"
    ase.io.write(data, images)
    config = _config(str(data), tmp_path / "runs", 0.0, epochs=2)
    config["dataset"]["fp_params"] = {"MCSHs": {"orders": [0, 1], "sigmas": [0.5, 1.0]}, "cutoff": 5.0}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with monkeypatch.context() as m:
        _kill_after(m, 1)
        with pytest.raises(_Killed):
            main(["train", str(path), "-q"])
    (run_dir,) = (tmp_path / "runs" / "checkpoints").iterdir()
    assert (run_dir / RESUME_FILE).is_file()
    assert main(["train", str(path), "optim.epochs=3", "--resume", str(run_dir), "-q"]) == 0
    assert not (run_dir / RESUME_FILE).exists() and len(_metrics_rows(run_dir)) == 3
    assert TrainedPotential.load(run_dir).config["optim"]["epochs"] == 3
    capsys.readouterr()
    assert main(["train", str(path), "optim.epochs=3", "--resume", str(run_dir), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "finished" in err and len(err.strip().splitlines()) == 1
