"""The skorch net: an AtomisticModel trained on Batches of FeatureRecords (or of GeometryRecords: recompute mode).

Loss (per batch, in units of the energy scale s, eV/atom):
    L = mean(((E - E_ref) / n / s)^2) + force_coefficient * mean(((F - F_ref) / s)^2)
        + stress_coefficient * mean(((sigma - sigma_ref) / s)^2)      (squares -> |.| for "mae")
Metrics (energy MAE per atom, force MAE, and RMSEs) are accumulated from the
same forward passes that produce the loss, so scoring costs nothing extra.

Those running ``train_*`` metrics average over an epoch's batches while the
weights move, with dropout and batch-norm in training mode: they describe no
single set of weights. A run without a validation split therefore also scores
the epoch's final weights on the training set in evaluation mode
(``train_eval_*``, one forward pass; ``train_eval``) and picks its best epoch
by that, so the kept model is the one that was scored.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.dataset import unpack_data

from amptorch.data import Batch
from amptorch.errors import InputError


class TrainingDiverged(InputError):
    """Training stopped on a non-finite loss or one DIVERGED_FACTOR times its first value (an InputError:
    the settings, usually ``optim.lr``, are at fault; the CLI exits with status 2)."""


def residuals(pred: dict, batch: Batch) -> dict[str, torch.Tensor]:
    """Prediction minus label, per quantity: ``energy`` (B,) eV/atom, ``forces`` (N, 3) eV/Å, ``stress`` (B', 6)
    eV/Å^3 over the periodic structures; a quantity is left out where the prediction or the label is missing."""
    dtype = pred["energy"].dtype
    out = {"energy": (pred["energy"] - batch.energy.to(dtype)) / batch.n_atoms.to(dtype)}
    if "forces" in pred and batch.forces is not None:
        out["forces"] = pred["forces"] - batch.forces.to(dtype)
    if "stress" in pred and batch.stress is not None:
        ok = ~torch.isnan(pred["stress"][:, 0])
        if ok.any():
            out["stress"] = pred["stress"][ok] - batch.stress.to(dtype)[ok]
    return out


class AtomsLoss(torch.nn.Module):
    """Energy-per-atom + force + stress loss on a model output dict and a Batch."""

    def __init__(self, force_coefficient: float = 0.0, stress_coefficient: float = 0.0, kind: str = "mse",
                 energy_scale: float = 1.0):  # fmt: skip
        super().__init__()
        self.coefficients = {"energy": 1.0, "forces": force_coefficient, "stress": stress_coefficient}
        self.kind = kind
        self.energy_scale = energy_scale

    def _err(self, d: torch.Tensor) -> torch.Tensor:
        d = d / self.energy_scale
        return (d * d).mean() if self.kind == "mse" else d.abs().mean()

    def from_residuals(self, res: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss of :func:`residuals` (computed once per batch and shared with the metrics)."""
        loss = self._err(res["energy"])
        for name in ("forces", "stress"):
            if self.coefficients[name] > 0 and name in res:
                loss = loss + self.coefficients[name] * self._err(res[name])
        return loss

    def forward(self, pred: dict, batch: Batch) -> torch.Tensor:
        return self.from_residuals(residuals(pred, batch))


class _Accumulator:
    """Sums of absolute and squared errors over an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, err: torch.Tensor) -> None:
        e = err.detach().to(torch.float64)
        s = self.sums.setdefault(name, [0.0, 0.0, 0])
        s[0] += float(e.abs().sum())
        s[1] += float((e * e).sum())
        s[2] += e.numel()

    def results(self) -> dict[str, tuple[float, float]]:
        return {k: (a / n, float(np.sqrt(q / n))) for k, (a, q, n) in self.sums.items() if n}


DIVERGED_FACTOR = 1e8  # a loss this many times its first value (or above 1e8 x 1) stops training


class AtomsNet(NeuralNet):
    """skorch NeuralNet for AtomisticModel: custom batches, forces in validation, free metrics.

    Extra args:
        forces / stress: predict (and fit) forces / stress.
        train_eval: "energy" or "forces": at each epoch's end, score the final weights on the
            training set in evaluation mode for that quantity (``train_eval_<q>_mae`` / ``_rmse``
            and their ``_best`` flags); None (with a validation split) does not.
    """

    def __init__(self, module, *args, forces: bool = True, stress: bool = False, train_eval: str | None = None,
                 **kwargs):  # fmt: skip
        super().__init__(module, *args, **kwargs)
        self.forces = forces
        self.stress = stress
        self.train_eval = train_eval
        self._acc = {True: _Accumulator(), False: _Accumulator()}
        self._first_loss: float | None = None

    def infer(self, x: Batch, **fit_params):
        # the model moves and casts the batch itself
        return self.module_(x, forces=self.forces, stress=self.stress, create_graph=self.module_.training)

    def evaluation_step(self, batch, training=False):
        # forces need autograd even when not training
        self.check_is_fitted()
        Xi, _ = unpack_data(batch)
        with torch.enable_grad():
            self._set_training(training)
            out = self.infer(Xi)
        return {k: v.detach() for k, v in out.items()}

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = y_true.targets(self.device)  # the inputs were moved by the forward pass
        res = residuals(y_pred, y_true)
        acc = self._acc[bool(training)]
        for name, err in res.items():
            acc.add(name, err)
        if isinstance(self.criterion_, AtomsLoss):
            return self.criterion_.from_residuals(res)
        return self.criterion_(y_pred, y_true)

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        super().on_batch_end(net, batch=batch, training=training, **kwargs)
        # the loss skorch has just recorded (already a float: no extra device sync)
        prefix = "train" if training else "valid"
        loss = self.history[-1, "batches", -1, f"{prefix}_loss"]
        if self._first_loss is None and training:
            self._first_loss = loss
        limit = DIVERGED_FACTOR * max(self._first_loss if self._first_loss is not None else 1.0, 1.0)
        if not math.isfinite(loss) or loss > limit:
            what = (
                f"the loss is {loss}"
                if not math.isfinite(loss)
                else (f"the loss is {loss:.3g}, over 1e8 times its first value {self._first_loss:.3g}")
            )
            raise TrainingDiverged(
                f"training diverged at epoch {len(self.history)}, {prefix} batch {len(self.history[-1, 'batches'])}: "
                f"{what}; expected a finite, decreasing loss; try a lower lr (now {self.lr:g}) or "
                "optim.gradient_clipping",
                "config optim.lr",
            )

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self._first_loss = None  # the first training batch's loss: the scale divergence is measured against

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        self._acc = {True: _Accumulator(), False: _Accumulator()}

    def _score_train_set(self, dataset) -> _Accumulator:
        """Errors of the current weights on ``dataset`` in evaluation mode (``train_eval``'s quantity only:
        an energy score needs no force pass)."""
        acc = _Accumulator()
        forces = self.train_eval == "forces" and self.forces
        for batch in self.get_iterator(dataset, training=False):
            Xi, _ = unpack_data(batch)
            self._set_training(False)
            with torch.enable_grad() if forces else torch.no_grad():
                out = self.module_(Xi, forces=forces, stress=False, create_graph=False)
            out = {k: v.detach() for k, v in out.items()}
            res = residuals(out, Xi.targets(self.device))
            acc.add("energy", res["energy"])
            if forces and "forces" in res:
                acc.add("forces", res["forces"])
        return acc

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_end(net, dataset_train, dataset_valid, **kwargs)
        sources = [("train", self._acc[True]), ("valid", self._acc[False])]
        if self.train_eval and dataset_train is not None:
            sources.append(("train_eval", self._score_train_set(dataset_train)))
        for prefix, acc in sources:
            for name, (mae, rmse) in acc.results().items():
                for metric, value in (("mae", mae), ("rmse", rmse)):
                    key = f"{prefix}_{name}_{metric}"
                    previous = [row[key] for row in self.history[:-1] if key in row]
                    self.history.record(key, value)
                    self.history.record(f"{key}_best", not previous or value < min(previous))
