"""skorch callbacks of the trainer: best-model checkpoint, CSV metrics log, the per-epoch resume state, the
energy-refinement phase and the weights' moving average.

Early stopping, LR schedules, gradient clipping, TensorBoard and the epoch
table are skorch's own callbacks (wired in ``trainer.py``).
"""

from __future__ import annotations

import copy
import csv
import json
import random
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback, LRScheduler

from amptorch.files import atomic_write

RESUME_FILE = "resume.pt"
RESUME_FORMAT = 1


class BestWeights(Callback):
    """Keep the weights of the best epoch by ``monitor`` (a ``<key>_best`` flag) and
    save the checkpoint atomically through ``save(state_dict)`` when given; weights with a
    non-finite value are never kept."""

    def __init__(self, monitor: str, save=None):
        self.monitor = monitor
        self.save = save
        self.best_state: dict | None = None
        self.best_epoch: int | None = None

    def on_train_begin(self, net, **kwargs):
        self.best_state, self.best_epoch = None, None

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        if row.get(self.monitor, self.best_state is None):
            state = net.module_.state_dict()
            if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
                return  # never keep (or save) non-finite weights as the best
            self.best_state = copy.deepcopy(state)
            self.best_epoch = row["epoch"]
            if self.save is not None:
                self.save(self.best_state)
            row["event_cp"] = True


class EnergyRefinement(Callback):
    """After ``start`` epochs, train on from the best weights so far with the force coefficient lowered (one
    step) to ``force_coefficient`` at a constant learning rate ``lr`` (set at each epoch's start; the schedule,
    a :class:`PhaseLRScheduler`, stops stepping), the optimizer's moments reset once, at the switch.

    Force training fits the forces first: in the loss, normalized by the same energy scale, the force term
    outweighs the per-atom energy term ~100× at a force coefficient of 0.1, and the training set's energies
    stay 3-6 meV/atom off while its forces are fitted (mlearn Mo, docs/accuracy.md). A second phase with the
    energy weighted up moves the energies without undoing the forces. The phase is a function of the epoch
    number, so a resumed run re-enters it where it was. Each epoch's force coefficient is recorded in the
    history as ``force_coefficient``.
    """

    def __init__(self, start: int, force_coefficient: float, lr: float):
        self.start = start
        self.force_coefficient = force_coefficient
        self.lr = lr

    def _refining(self, net) -> bool:
        return len(net.history) > self.start  # the current epoch's row is already there

    def on_train_begin(self, net, **kwargs):
        self.initial = net.criterion_.coefficients["forces"]  # the config's (a resumed run's criterion is new)

    def on_epoch_begin(self, net, **kwargs):
        refining = self._refining(net)
        if refining and len(net.history) == self.start + 1:
            best = dict(net.callbacks_)["best"].best_state
            if best is not None:  # refine the best weights of the first phase, not its last epoch's
                net.module_.load_state_dict(best)
            if "ema" in dict(net.callbacks_):  # the average restarts from them
                dict(net.callbacks_)["ema"].reset(net)
            net.optimizer_.state.clear()  # fresh moments for the new loss (Adam's were scaled to the old one)
        coefficients = net.criterion_.coefficients
        coefficients["forces"] = self.force_coefficient if refining else self.initial
        net.history.record("force_coefficient", coefficients["forces"])
        if refining:
            self._set_lr(net)

    def _set_lr(self, net) -> None:
        for group in net.optimizer_.param_groups:
            group["lr"] = self.lr


class WeightAverage(Callback):
    """An exponential moving average (EMA) of the weights, the weights every epoch is scored and kept with.

    After each optimizer step the average moves towards the weights, ``avg += (1 - d) (w - avg)`` with
    ``d = min(decay, (1 + n) / (10 + n))`` after n steps (the warm-up of TensorFlow's
    ExponentialMovingAverage, so the first steps' random weights fade fast). When an epoch's training steps are
    done (``AtomsNet.run_single_epoch`` calls :meth:`on_training_done`) the averaged weights go into the module:
    the validation pass, the end-of-epoch training-set score, :class:`BestWeights` and so the checkpoint and
    the final model all see them. At the epoch's end (placed after "best", before "resume") the optimizer's own
    weights go back, and training goes on from them. As NequIP's and MACE's ``ema_decay``: the average of the
    last ~1 / (1 - decay) steps smooths the step noise a constant or slowly decaying learning rate leaves.
    Only parameters are averaged (buffers such as the element table are the module's own).
    """

    def __init__(self, decay: float):
        self.decay = decay
        self.average: list[torch.Tensor] | None = None
        self.updates = 0
        self._kept: list[torch.Tensor] | None = None  # the optimizer's weights while the average is swapped in

    def _params(self, net) -> list[torch.Tensor]:
        return list(net.module_.parameters())

    def reset(self, net) -> None:
        """Start the average again from the module's weights (a new run, or the refinement's switch)."""
        self.average = [p.detach().clone() for p in self._params(net)]
        self.updates = 0

    def on_train_begin(self, net, **kwargs):
        self._kept = None
        self.reset(net)  # (ResumeState, the last callback, then puts a resumed run's average back)

    def on_train_end(self, net, **kwargs):
        self._swap_out(net)

    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            torch._foreach_lerp_(self.average, [p.detach() for p in self._params(net)], 1.0 - decay)

    def on_training_done(self, net) -> None:
        """The epoch's training steps are done: score (and keep) the averaged weights."""
        if self._kept is None:
            params = self._params(net)
            with torch.no_grad():
                self._kept = [p.detach().clone() for p in params]
                torch._foreach_copy_(params, self.average)

    def on_epoch_end(self, net, **kwargs):
        self._swap_out(net)

    def _swap_out(self, net) -> None:
        if self._kept is not None:
            with torch.no_grad():
                torch._foreach_copy_(self._params(net), self._kept)
            self._kept = None

    def state(self) -> dict:
        """What :class:`ResumeState` saves: ``average`` (tensors) and ``updates``."""
        return {"average": [t.detach().clone() for t in self.average], "updates": int(self.updates)}

    def load_state(self, state: dict, net) -> None:
        """Put a saved average back, on the device and in the dtype of ``net``'s parameters (``resume.pt`` is
        read onto the CPU)."""
        self.average = [t.to(device=p.device, dtype=p.dtype, copy=True)
                        for t, p in zip(state["average"], self._params(net), strict=True)]  # fmt: skip
        self.updates = int(state["updates"])


class PhaseLRScheduler(LRScheduler):
    """skorch's LRScheduler that stops stepping after ``stop_after_`` epochs, where the energy refinement holds
    its own constant rate (a schedule sized to ``optim.epochs``, e.g. OneCycleLR's ``total_steps``, would run
    past its end). Set ``stop_after_`` after construction: skorch passes every attribute not ending in ``_``
    to the policy."""

    stop_after_: int | None = None

    def _done(self, net) -> bool:
        return self.stop_after_ is not None and len(net.history) > self.stop_after_

    def on_epoch_end(self, net, **kwargs):
        if not self._done(net):
            super().on_epoch_end(net, **kwargs)

    def on_batch_end(self, net, training, **kwargs):
        if not self._done(net):
            super().on_batch_end(net, training, **kwargs)


class CSVLog(Callback):
    """Append one row of scalar metrics per epoch to ``path`` (header from the first epoch)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.keys: list[str] | None = None

    def on_train_begin(self, net, **kwargs):
        self.keys = None

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        if self.keys is None:
            self.keys = [k for k, v in row.items() if isinstance(v, (int, float)) and k != "batches"]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", newline="") as fh:
                csv.writer(fh).writerow(self.keys)
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([row.get(k, "") for k in self.keys])


def rng_state() -> dict:
    """torch (CPU and, when initialized, CUDA), numpy and python ``random`` states as tensors, numbers and lists
    (``torch.load(weights_only=True)`` reads them back)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    """The inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value):
    """A history value JSON cannot write (numpy or torch scalars, arrays) as a number, a list or its text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class ResumeState(Callback):
    """After every epoch, write ``path`` (``resume.pt``) atomically: everything a killed run needs to go on
    from the next epoch exactly as if it had not stopped. The last callback of the net (after BestWeights,
    CSVLog, schedules and early stopping, whose state it holds).

    Contents (tensors, numbers, strings, lists and dicts only: ``torch.load(weights_only=True)``):
    ``format``, ``epoch`` (epochs done), ``model`` (this epoch's weights), ``optimizer``, ``lr_scheduler``
    (or None), ``best`` (BestWeights' ``state`` and ``epoch``), ``early_stopping`` (``misses``,
    ``threshold``) or None, ``scores`` (skorch scorers' best scores), ``csv_keys``, ``ema`` (the
    :class:`WeightAverage` state) or None, ``first_loss``,
    ``history`` (the skorch history as JSON, per-batch rows left out) and ``rng`` (:func:`rng_state`).

    ``restore(net, state)`` on an initialized net, before ``partial_fit``, loads the weights and the optimizer
    (skorch's LRScheduler needs the optimizer's ``initial_lr`` when it makes the scheduler) and puts the rest
    back at ``on_train_begin``, after the other callbacks have reset themselves there.

    ``write=False`` (the ranks other than 0 of a distributed run): restores, writes nothing."""

    def __init__(self, path: str | Path, write: bool = True):
        self.path = Path(path)
        self.write = write
        self._pending: dict | None = None

    def restore(self, net, state: dict) -> None:
        net.module_.load_state_dict(state["model"])
        net.optimizer_.load_state_dict(state["optimizer"])
        self._pending = state

    def on_train_begin(self, net, **kwargs):
        state, self._pending = self._pending, None
        if state is None:
            return
        cbs = dict(net.callbacks_)
        if state["lr_scheduler"] is not None and "lr" in cbs:
            cbs["lr"].lr_scheduler_.load_state_dict(state["lr_scheduler"])
        net.optimizer_.load_state_dict(state["optimizer"])  # the learning rates, before the scheduler was made
        best = cbs["best"]
        best.best_state, best.best_epoch = state["best"]["state"], state["best"]["epoch"]
        if state["early_stopping"] is not None and "early" in cbs:
            cbs["early"].misses_ = state["early_stopping"]["misses"]
            cbs["early"].dynamic_threshold_ = state["early_stopping"]["threshold"]
        for name, score in state["scores"].items():
            if name in cbs:
                cbs[name].best_score_ = score
        if "csv" in cbs:
            cbs["csv"].keys = state["csv_keys"]
        if state.get("ema") is not None and "ema" in cbs:
            cbs["ema"].load_state(state["ema"], net)
        net._first_loss = state["first_loss"]
        set_rng_state(state["rng"])

    def on_epoch_end(self, net, **kwargs):
        if not self.write:
            return
        cbs = dict(net.callbacks_)
        best = cbs["best"]
        early = cbs.get("early")
        history = [{k: v for k, v in row.items() if k != "batches"} for row in net.history]
        state = {
            "format": RESUME_FORMAT,
            "epoch": len(net.history),
            "model": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "lr_scheduler": cbs["lr"].lr_scheduler_.state_dict() if "lr" in cbs else None,
            "best": {"state": best.best_state, "epoch": best.best_epoch},
            "early_stopping": None if early is None else {"misses": int(early.misses_),
                                                          "threshold": float(early.dynamic_threshold_)},
            "scores": {name: float(cb.best_score_) for name, cb in cbs.items() if hasattr(cb, "best_score_")},
            "csv_keys": cbs["csv"].keys if "csv" in cbs else None,
            "ema": cbs["ema"].state() if "ema" in cbs else None,
            "first_loss": net._first_loss,
            "history": json.dumps(history, default=_plain),
            "rng": rng_state(),
        }  # fmt: skip
        atomic_write(self.path, lambda fh: torch.save(state, fh))
