"""Data-parallel training (issue 11): ``torchrun`` with 2 processes (gloo, CPU) equals one process.

One ``torchrun --nproc_per_node 2`` launch runs this file as its script (``_worker``): two short runs,
stored features (BPNN on Cu/Au, a validation split) and recompute mode (SingleNN, no validation split:
the end-of-epoch scoring is split over the ranks too), float64, energies + forces + stress, shuffled, on
31- and 32-atom cells so each rank's slice has its own atom count, with a last global batch of one
structure (rank 1 gets an empty slice). The same configs then train in this process, and:

* the weights of both ranks equal each other exactly and the one-process weights to 1e-10;
* every epoch's losses and error metrics, the best epoch and the final metrics equal the one-process ones;
* rank 0 alone wrote the run directory (an audit hook on rank 1 records any file it opens for writing);
* a run killed after its first epoch resumes, under torchrun or in one process, to the same weights;
* ranks that read different data stop together with one error naming ``config dataset``.

Without torchrun: the batch sampler (one process gives skorch's own batches; the ranks' slices tile each
global batch) and the loss normalisation (slices with global counts add up to the whole batch's loss and
gradient; per-slice means do not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from amptorch.train.distributed import RankBatchSampler
from amptorch.train.net import AtomsLoss, residual_counts, residuals

MODES = ("stored", "recompute")
HISTORY_KEYS = ("train_loss", "valid_loss", "train_energy_mae", "train_forces_rmse", "train_stress_mae",
                "valid_energy_mae", "valid_forces_mae", "train_eval_energy_mae", "train_eval_energy_rmse")  # fmt: skip


def _images():
    """10 EMT-labelled fcc cells: 31 or 32 atoms, two of them with one Au atom."""
    from amptorch.testing import label_emt, make_cu_emt

    images = make_cu_emt(10, seed=4, a=3.61, big_every=0, vacancy_every=2)
    for k in (1, 6):
        images[k].numbers[3] = 79
        label_emt(images[k])
    return images


def _config(mode: str, run_dir: Path) -> dict:
    stored = mode == "stored"
    return {
        "model": {"name": "bpnn" if stored else "singlenn", "get_forces": True, "hidden_layers": [6, 6]},
        "optim": {"device": "cpu", "force_coefficient": 0.1, "stress_coefficient": 0.05, "lr": 3e-2,
                  "batch_size": 3, "epochs": 2},
        "dataset": {"raw_data": _images(), "val_split": 0.3 if stored else 0.0, "features": mode,
                    "save_fps": False, "elements": ["Au", "Cu"],
                    "fp_params": {"MCSHs": {"orders": [0, 1, 2], "sigmas": [0.6, 1.2]}, "cutoff": 4.5,
                                  "smooth_cutoff": "cosine"}},
        "cmd": {"debug": False, "run_dir": str(run_dir), "seed": 3, "identifier": mode, "verbose": False,
                "dtype": "float64"},
    }  # fmt: skip


def _summary(trainer) -> dict:
    rows = [{k: v for k, v in row.items() if k != "batches"} for row in trainer.net.history]
    return {"history": rows, "metrics": trainer.metrics, "run_dir": str(trainer.run_dir),
            "best_epoch": dict(trainer.net.callbacks_)["best"].best_epoch}  # fmt: skip


def _weights(trainer) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in trainer.potential.model.state_dict().items()}


def _written(root: Path) -> list[str]:
    """From now on, paths under ``root`` this process opens for writing, makes, renames or removes."""
    seen: list[str] = []
    prefix = str(root)
    write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = (list(args) + [None, None])[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write
            )
            if writes and os.fsdecode(path).startswith(prefix):
                seen.append(os.fsdecode(path))
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir") and args:
            if os.fsdecode(args[0]).startswith(prefix):
                seen.append(f"{event} {os.fsdecode(args[0])}")

    sys.addaudithook(hook)
    return seen


class _Killed(RuntimeError):
    pass


def _killed_after_first_epoch(config: dict) -> Path:
    """Train ``config`` on every rank until the first epoch's end (resume.pt written), stopped there by an
    exception as by a kill; the run directory."""
    from skorch.callbacks import Callback

    from amptorch.train import AtomsTrainer, distributed

    class Kill(Callback):
        def on_epoch_end(self, net, **kwargs):
            raise _Killed("killed after epoch 1")

    original = AtomsTrainer._callbacks
    AtomsTrainer._callbacks = lambda self, *args: [*original(self, *args), ("kill", Kill())]
    try:
        trainer = AtomsTrainer(config)
        with pytest.raises(_Killed):
            trainer.train()
    finally:
        AtomsTrainer._callbacks = original
    distributed.barrier()  # a restart comes after every rank stopped (and rank 0 wrote resume.pt)
    return trainer.run_dir


def _cli_train(out: Path, run_dir: Path, rank: int) -> None:
    """``amptorch train`` (the code ``torchrun -m amptorch.cli train`` runs) from a file, with the fingerprint
    cache: rank 0 fills it, then rank 1 reads it. Writes this rank's exit status and printout to ``out``."""
    import contextlib
    import io

    import yaml
    from ase.io import write

    from amptorch.cli import main

    data, config = out / f"cli-{rank}.extxyz", out / f"cli-{rank}.yaml"  # this rank's copies: no shared writes
    write(data, _images())
    cfg = _config("stored", run_dir)
    cfg["dataset"].update(raw_data=str(data), save_fps=True)
    cfg["optim"]["epochs"] = 1
    config.write_text(yaml.safe_dump(cfg))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["train", str(config)])
    (out / f"cli-{rank}.json").write_text(json.dumps({"status": status, "printed": printed.getvalue()}))


def _worker(out: Path, runs: Path) -> None:
    """One torchrun process: train each mode, and the stored mode again killed after its first epoch and
    resumed; write this rank's weights, history and file writes to ``out``."""
    from amptorch.errors import InputError
    from amptorch.train import AtomsTrainer, distributed

    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    seen = _written(runs) if rank else []
    for mode in (*MODES, "resumed"):
        config = _config("stored" if mode == "resumed" else mode, runs / mode)
        if mode == "resumed":
            trainer = AtomsTrainer(config).train(resume=_killed_after_first_epoch(config))
        else:
            trainer = AtomsTrainer(config).train()
        assert distributed.current().size == 2 and distributed.rank() == rank
        assert len(trainer._splits[0]) % 3 == 1  # the last global batch: 1 structure, rank 1's slice is empty
        np.savez(out / f"{mode}-{rank}.npz", **_weights(trainer))
        (out / f"{mode}-{rank}.json").write_text(json.dumps({**_summary(trainer), "written": list(seen)}))
    killed = _killed_after_first_epoch(_config("stored", runs / "killed"))  # resumed by one process in the test
    (out / f"killed-{rank}.json").write_text(json.dumps({"run_dir": str(killed), "written": list(seen)}))
    _cli_train(out, runs / "cli", rank)
    config = _config("stored", runs / "mismatch")  # rank 1 sees one structure less: every rank stops at once
    config["dataset"]["raw_data"] = config["dataset"]["raw_data"][: 10 - rank]
    with pytest.raises(InputError) as err:
        AtomsTrainer(config).train()
    (out / f"mismatch-{rank}.json").write_text(json.dumps({"error": str(err.value), "written": list(seen)}))
    distributed.shutdown()


def _close(a, b, rtol: float = 1e-10, what: str = "") -> None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(float(np.abs(b).max(initial=0.0)), 1e-300)
    assert a.shape == b.shape and float(np.abs(a - b).max(initial=0.0)) <= rtol * scale, (what, a, b)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory) -> Path:
    """The two-process runs (``out``: per-rank results; ``runs``: their run directories)."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "out").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, str(root / "out"), str(root / "runs")]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if "Error" in line and "Warning" not in line]
    assert done.returncode == 0, "\n".join(errors[-20:]) + done.stderr[-4000:]
    return root


@pytest.fixture
def one_thread():
    """torch on one thread, as each rank (then back to what it was)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_equal_one(ddp_runs, tmp_path, mode, one_thread):
    from amptorch.train import AtomsTrainer

    ref = AtomsTrainer(_config(mode, tmp_path)).train()
    want, summary = _weights(ref), _summary(ref)
    ranks = [np.load(ddp_runs / "out" / f"{mode}-{r}.npz", allow_pickle=False) for r in (0, 1)]
    results = [json.loads((ddp_runs / "out" / f"{mode}-{r}.json").read_text()) for r in (0, 1)]
    assert set(ranks[0].files) == set(want)
    for name, value in want.items():
        assert np.array_equal(ranks[0][name], ranks[1][name]), name  # the ranks never drift apart
        _close(ranks[0][name], value, what=name)
    cfg = _config(mode, tmp_path)
    cfg["cmd"]["debug"] = True
    untrained = _weights(AtomsTrainer(cfg).load())
    assert any(not np.allclose(untrained[k], want[k]) for k in want)  # the comparison is of trained weights
    for got in results:
        assert got["best_epoch"] == summary["best_epoch"] and got["run_dir"] == results[0]["run_dir"]
        assert len(got["history"]) == len(summary["history"]) == 2
        for row, want_row in zip(got["history"], summary["history"], strict=True):
            keys = [k for k in HISTORY_KEYS if k in want_row]
            assert set(keys) <= set(row) and len(keys) >= 5
            for key in keys:
                _close(row[key], want_row[key], what=key)
            assert row.get("event_cp") == want_row.get("event_cp")
        for split, values in summary["metrics"].items():
            if isinstance(values, dict):
                for key, value in values.items():
                    _close(got["metrics"][split][key], value, what=f"{split} {key}")
    # rank 0 alone wrote: one run directory holding what a one-process run holds; rank 1 wrote nothing there
    (run,) = (ddp_runs / "runs" / mode / "checkpoints").iterdir()
    assert str(run) == results[0]["run_dir"]
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in Path(ref.run_dir).iterdir())
    assert {"config.json", "model.pt", "meta.json", "metrics.csv", "metrics.json"} <= {p.name for p in run.iterdir()}
    assert results[1]["written"] == []


def test_two_processes_resume_a_killed_run(ddp_runs):
    """Stopped after epoch 1 and resumed under torchrun: the weights and history of the uninterrupted run."""
    out = ddp_runs / "out"
    for rank in (0, 1):
        resumed, whole = (np.load(out / f"{m}-{rank}.npz", allow_pickle=False) for m in ("resumed", "stored"))
        for name in whole.files:
            assert np.array_equal(resumed[name], whole[name]), name
        got, want = (json.loads((out / f"{m}-{rank}.json").read_text()) for m in ("resumed", "stored"))
        for row, want_row in zip(got["history"], want["history"], strict=True):
            for key in HISTORY_KEYS:
                assert row.get(key) == want_row.get(key), key
    (run,) = (ddp_runs / "runs" / "resumed" / "checkpoints").iterdir()
    assert not (run / "resume.pt").exists() and len((run / "metrics.csv").read_text().splitlines()) == 3


def test_one_process_resumes_a_two_process_run(ddp_runs, one_thread):
    """resume.pt holds nothing of the number of ranks: a run killed under torchrun goes on in one process and
    ends as the uninterrupted two-process run did."""
    from amptorch.train import AtomsTrainer

    killed = [json.loads((ddp_runs / "out" / f"killed-{r}.json").read_text()) for r in (0, 1)]
    assert killed[0]["run_dir"] == killed[1]["run_dir"] and killed[1]["written"] == []
    run = Path(killed[0]["run_dir"])
    assert (run / "resume.pt").is_file()
    trainer = AtomsTrainer(_config("stored", ddp_runs / "runs" / "killed")).train(resume=run)
    whole = np.load(ddp_runs / "out" / "stored-0.npz", allow_pickle=False)
    for name, value in _weights(trainer).items():
        _close(value, whole[name], what=name)


def test_cli_under_torchrun(ddp_runs):
    """``amptorch train`` on 2 ranks with the fingerprint cache: rank 0 alone writes the cache and the run and
    prints the summary."""
    cli = [json.loads((ddp_runs / "out" / f"cli-{r}.json").read_text()) for r in (0, 1)]
    assert [c["status"] for c in cli] == [0, 0]
    assert "trained in" in cli[0]["printed"] and cli[1]["printed"] == ""
    (run,) = (ddp_runs / "runs" / "cli" / "checkpoints").iterdir()
    assert (run / "model.pt").is_file() and len(list((ddp_runs / "runs" / "cli").rglob("*.npz"))) == 10
    written = json.loads((ddp_runs / "out" / "mismatch-1.json").read_text())["written"]
    assert written == []  # rank 1 read the cache rank 0 had filled, and wrote nothing


def test_ranks_with_other_data_stop_together(ddp_runs):
    errors = [json.loads((ddp_runs / "out" / f"mismatch-{r}.json").read_text()) for r in (0, 1)]
    assert errors[0]["error"] == ("config dataset: rank 0 has 7 training structures, others between 6 and 7; "
                                  "expected the same data on every rank (same config and files)")  # fmt: skip
    assert errors[1]["error"].startswith("config dataset: rank 1 has 6 training structures")
    assert errors[1]["written"] == []


def test_sampler_one_process_is_skorchs_order_and_ranks_tile_each_batch():
    from torch.utils.data import DataLoader

    n, bs = 11, 4
    torch.manual_seed(5)
    skorch_order = [b.tolist() for b in DataLoader(list(range(n)), batch_size=bs, shuffle=True)]
    torch.manual_seed(5)
    torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's base seed, drawn before the order
    ours = list(RankBatchSampler(n, bs, shuffle=True))
    assert ours == skorch_order and len(RankBatchSampler(n, bs, True)) == 3
    for size in (2, 3, 5):
        slices = []
        for rank in range(size):
            torch.manual_seed(5)
            torch.empty((), dtype=torch.int64).random_()
            slices.append(list(RankBatchSampler(n, bs, True, rank, size)))
        for k, batch in enumerate(skorch_order):
            parts = [s[k] for s in slices]
            assert sum(parts, []) == batch  # contiguous slices in rank order
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
            assert RankBatchSampler(n, bs, True, 0, size).global_size(k) == len(batch)
    # the last global batch (3 structures) over 5 ranks: ranks 3 and 4 get nothing, and still a batch each
    assert [len(list(RankBatchSampler(n, bs, False, r, 5))[-1]) for r in range(5)] == [1, 1, 1, 0, 0]
    assert list(RankBatchSampler(5, 2, False)) == [[0, 1], [2, 3], [4]]
    from amptorch.errors import InputError

    with pytest.raises(InputError, match="optim.batch_size"):
        RankBatchSampler(5, 0, False)


def test_loss_with_global_counts_adds_up_over_slices():
    """Slices of unequal size, each normalised by the whole batch's counts, add up to the whole batch's loss
    and gradient; the mean of per-slice means (what averaging per-rank losses would give) does not."""
    from amptorch.data import collate, featurize
    from amptorch.testing import make_potential

    images = _images()[:5]
    pot = make_potential("gmp_smooth", "singlenn", elements=("Cu", "Au"), dtype="float64", fit_to=images, seed=0)
    model = pot.model
    records = featurize(images, pot.descriptor, derivatives=True, strain=True, forces=True, stress=True)
    loss_fn = AtomsLoss(force_coefficient=0.3, stress_coefficient=0.2, kind="mse", energy_scale=0.7)

    def loss_and_grad(batches, global_counts: bool):
        model.zero_grad()
        parts = [residuals(model(b, forces=True, stress=True, create_graph=True), b) for b in batches]
        if global_counts:
            counts = {q: sum(residual_counts(r).get(q, 0) for r in parts) for q in ("energy", "forces", "stress")}
            loss = sum(loss_fn.from_residuals(r, counts) for r in parts)
        else:
            loss = sum(loss_fn.from_residuals(r) for r in parts) / len(parts)
        loss.backward()
        return float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    whole = loss_and_grad([collate(records)], True)
    split = loss_and_grad([collate(records[:3]), collate(records[3:])], True)
    naive = loss_and_grad([collate(records[:3]), collate(records[3:])], False)
    _close(split[0], whole[0], 1e-12, "loss")
    _close(split[1], whole[1], 1e-12, "gradient")
    assert abs(naive[0] - whole[0]) > 1e-6 * abs(whole[0])
    # in one process (no counts given) each term is the plain mean over the batch
    b = collate(records)
    with torch.no_grad():
        r = residuals(model(b, forces=True, stress=True), b)
        mean = sum(c * ((r[q] / 0.7) ** 2).mean() for q, c in (("energy", 1.0), ("forces", 0.3), ("stress", 0.2)))
        _close(float(loss_fn.from_residuals(r)), float(mean), 1e-14, "mean")


def test_setup_outside_torchrun_and_bad_environment(monkeypatch):
    from amptorch.errors import InputError
    from amptorch.train import distributed

    monkeypatch.setattr(distributed, "_world", None)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    world = distributed.setup("cpu")
    assert (world.rank, world.size, world.main, world.distributed) == (0, 1, True, False)
    assert distributed.broadcast_text("x") == "x" and distributed.broadcast_int(3) == 3
    t = torch.ones(2)
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1.0, 1.0]
    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="RANK, LOCAL_RANK not"):
        distributed.setup("cpu")
    monkeypatch.setenv("RANK", "two")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(InputError, match="environment RANK: 'two'; expected a whole number"):
        distributed.setup("cpu")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(InputError, match="expected 0 <= RANK < WORLD_SIZE"):
        distributed.setup("cpu")
    monkeypatch.setenv("RANK", "1")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="optim.device: rank 1 needs cuda:0"):
            distributed.setup("cuda")
    monkeypatch.setattr(distributed, "_world", None)


if __name__ == "__main__":  # a torchrun process of ddp_runs
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
