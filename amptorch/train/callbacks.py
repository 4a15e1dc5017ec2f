"""skorch callbacks of the trainer: best-model checkpoint and CSV metrics log.

Early stopping, LR schedules, gradient clipping, TensorBoard and the epoch
table are skorch's own callbacks (wired in ``trainer.py``).
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import torch
from skorch.callbacks import Callback


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
