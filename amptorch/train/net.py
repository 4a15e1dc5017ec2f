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

Under ``torchrun`` (``amptorch.train.distributed``) each rank computes the loss of its slice of the global
batch with the means taken over the whole global batch, so the ranks' gradients add up to the one-process
gradient; the metrics' sums are added over ranks at each epoch's end.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.dataset import unpack_data
from torch.utils.data import DataLoader

from amptorch.data import Batch
from amptorch.errors import InputError
from amptorch.train.distributed import (
    RankBatchSampler,
    World,
    all_reduce_sum,
    broadcast_module,
    check_same,
    current,
    reduce_gradients,
)


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


QUANTITIES = ("energy", "forces", "stress")  # the residuals' keys, in the order counts and sums are reduced


def residual_counts(res: dict[str, torch.Tensor]) -> dict[str, int]:
    """How many values each quantity of :func:`residuals` has: energies B, forces 3N, stresses 6B'."""
    return {name: res[name].numel() for name in QUANTITIES if name in res}


class AtomsLoss(torch.nn.Module):
    """Energy-per-atom + force + stress loss on a model output dict and a Batch.

    Each term is a mean: the sum over the batch's values divided by their count. When a global batch is split
    over ranks (``amptorch.train.distributed``), each rank divides its own sums by the counts of the *whole*
    global batch, so the ranks' losses (and gradients) add up to the one-process loss exactly, whatever the
    atom counts of the slices; in one process the counts are the batch's own.
    """

    def __init__(self, force_coefficient: float = 0.0, stress_coefficient: float = 0.0, kind: str = "mse",
                 energy_scale: float = 1.0):  # fmt: skip
        super().__init__()
        self.coefficients = {"energy": 1.0, "forces": force_coefficient, "stress": stress_coefficient}
        self.kind = kind
        self.energy_scale = energy_scale

    def _err(self, d: torch.Tensor, count) -> torch.Tensor:
        d = d / self.energy_scale
        return ((d * d).sum() if self.kind == "mse" else d.abs().sum()) / count

    def from_residuals(self, res: dict[str, torch.Tensor], counts: dict | None = None) -> torch.Tensor:
        """The loss of :func:`residuals` (computed once per batch and shared with the metrics).

        ``counts``: what each term's sum is divided by (numbers or 0-d tensors keyed as :data:`QUANTITIES`):
        the global batch's counts when the batch is split over ranks; None: ``residual_counts(res)``.
        """
        counts = residual_counts(res) if counts is None else counts
        loss = self._err(res["energy"], counts["energy"])
        for name in ("forces", "stress"):
            if self.coefficients[name] > 0 and name in res:
                loss = loss + self.coefficients[name] * self._err(res[name], counts[name])
        return loss

    def forward(self, pred: dict, batch: Batch) -> torch.Tensor:
        return self.from_residuals(residuals(pred, batch))


def empty_batch() -> Batch:
    """A batch of no structures: a rank's slice of a global batch smaller than the number of ranks."""
    none = torch.zeros(0, dtype=torch.int64)
    return Batch(numbers=none, features=None, image=none, n_atoms=none)


class _Accumulator:
    """Sums of absolute and squared errors and their counts over an epoch, kept as float64 tensors on the
    model's device (no host round trip per batch; read once at the epoch's end)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, name: str, err: torch.Tensor) -> None:
        e = err.detach().to(torch.float64)
        row = torch.stack([e.abs().sum(), (e * e).sum(), e.new_full((), e.numel())])
        self.sums[name] = self.sums[name] + row if name in self.sums else row

    def totals(self, like: torch.Tensor) -> torch.Tensor:
        """(len(QUANTITIES), 3) [sum |e|, sum e^2, count] per quantity (zeros for one never added), float64 on
        ``like``'s device: the same shape on every rank, so the ranks' totals add up."""
        zero = like.new_zeros(3, dtype=torch.float64)
        return torch.stack([self.sums.get(name, zero).to(zero.device) for name in QUANTITIES])

    @staticmethod
    def results_of(totals: torch.Tensor) -> dict[str, tuple[float, float]]:
        """{quantity: (MAE, RMSE)} of :meth:`totals` (summed over ranks or not), for quantities with values."""
        out = {}
        for name, (a, q, n) in zip(QUANTITIES, totals.tolist(), strict=True):
            if n:
                out[name] = (a / n, float(np.sqrt(q / n)))
        return out

    def results(self) -> dict[str, tuple[float, float]]:
        return self.results_of(self.totals(torch.zeros(())))


DIVERGED_FACTOR = 1e8  # a loss this many times its first value (or above 1e8 x 1) stops training


class AtomsNet(NeuralNet):
    """skorch NeuralNet for AtomisticModel: custom batches, forces in validation, free metrics.

    Extra args:
        forces / stress: predict (and fit) forces / stress.
        train_eval: "energy" or "forces": at each epoch's end, score the final weights on the
            training set in evaluation mode for that quantity (``train_eval_<q>_mae`` / ``_rmse``
            and their ``_best`` flags); None (with a validation split) does not.

    Data parallel (``amptorch.train.distributed``, after its ``setup()`` made a World of several ranks): the
    loaders give each rank its slice of every global batch (:class:`RankBatchSampler`), the loss divides by the
    global batch's counts, gradients and losses are summed over ranks in each step, and so are the epoch's
    error sums before they are recorded: every rank records the one-process history and takes the same
    best-epoch, early-stopping and divergence decisions. In one process the same code runs with nothing to reduce.
    """

    def __init__(self, module, *args, forces: bool = True, stress: bool = False, train_eval: str | None = None,
                 **kwargs):  # fmt: skip
        super().__init__(module, *args, **kwargs)
        self.forces = forces
        self.stress = stress
        self.train_eval = train_eval
        self._acc = {True: _Accumulator(), False: _Accumulator()}
        self._first_loss: float | None = None
        self._samplers: dict[bool, RankBatchSampler] = {}  # the fit's batch samplers (training, validation)
        self._batches = {True: 0, False: 0}  # batches done this epoch (training, validation)
        self._fitting = False  # between on_train_begin and on_train_end: loaders give this rank's slices

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

    def _reference(self) -> torch.Tensor:
        """A parameter: the device and dtype of zeros and counts made for the step's collectives."""
        return next(self.module_.parameters())

    def _global_counts(self, res: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """The counts of the whole global batch (:data:`QUANTITIES`, summed over ranks, on the device); None in
        one process (the loss then counts its own batch)."""
        if not current().distributed:
            return None
        ref = self._reference()
        local = residual_counts(res)
        counts = torch.stack([ref.new_full((), float(local.get(q, 0)), dtype=torch.float64) for q in QUANTITIES])
        # summed exactly in float64, then in the model's dtype so the loss keeps it
        return dict(zip(QUANTITIES, all_reduce_sum(counts).to(ref.dtype).unbind(), strict=True))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        # an empty slice (a short last batch split over more ranks) has no residuals but joins the collectives
        res = residuals(y_pred, y_true.targets(self.device)) if len(y_true) else {}
        acc = self._acc[bool(training)]
        for name, err in res.items():
            acc.add(name, err)
        counts = self._global_counts(res)
        if not res:
            return self._reference().new_zeros(())
        if isinstance(self.criterion_, AtomsLoss):
            return self.criterion_.from_residuals(res, counts)
        loss = self.criterion_(y_pred, y_true.targets(self.device))
        # a user's loss is taken as a mean over its structures: weighted by this rank's share of the batch
        return loss if counts is None else loss * (res["energy"].numel() / counts["energy"])

    def train_step_single(self, batch, **fit_params):
        """skorch's step, plus: an empty slice computes nothing, and the gradients and the loss are summed over
        ranks (before ``on_grad_computed``, so gradient clipping sees the global gradient)."""
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params) if len(Xi) else {}
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        if loss.requires_grad:
            loss.backward()
        loss = reduce_gradients([p for _, p in self.get_all_learnable_params()], loss)
        return {"loss": loss, "y_pred": y_pred}

    def validation_step(self, batch, **fit_params):
        Xi, yi = unpack_data(batch)
        if len(Xi):
            step = super().validation_step(batch, **fit_params)
        else:
            self._set_training(False)
            step = {"loss": self.get_loss({}, yi, X=Xi, training=False), "y_pred": {}}
        if current().distributed:  # the global batch's loss on every rank
            step["loss"] = all_reduce_sum(step["loss"].detach().clone())
        return step

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """skorch's epoch half; before the validation half (run even without a validation split) the callbacks
        with an ``on_training_done(net)`` hook hear that the epoch's optimizer steps are done
        (:class:`~amptorch.train.callbacks.WeightAverage` swaps its averaged weights in)."""
        if not training:
            for _, cb in self.callbacks_:
                if hasattr(cb, "on_training_done"):
                    cb.on_training_done(self)
        super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)

    def get_iterator(self, dataset, training=False):
        """A DataLoader over this rank's slices of the global batches (:class:`RankBatchSampler`) while
        fitting; in one process, or outside fitting (``forward``, ``predict``), whole batches in skorch's own
        order."""
        return self._loader(dataset, training, record=True)

    def _loader(self, dataset, training: bool, record: bool):
        """:meth:`get_iterator`; ``record``: its sampler gives the global sizes of the batches the training
        loop logs (not so for the end-of-epoch scoring)."""
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        iterator = self.iterator_train if training else self.iterator_valid
        world = current() if self._fitting else World()
        if iterator is not DataLoader or {"sampler", "batch_sampler", "drop_last"} & set(kwargs):
            if world.distributed:
                raise InputError("a custom iterator or sampler cannot be split over ranks; expected skorch's "
                                 "DataLoader with batch_size and shuffle only", "iterator")  # fmt: skip
            return super().get_iterator(dataset, training=training)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        batch_size = len(dataset) if batch_size == -1 else batch_size
        shuffle = bool(kwargs.pop("shuffle", False))
        sampler = RankBatchSampler(len(dataset), batch_size, shuffle, world.rank, world.size)
        if record:
            self._samplers[bool(training)] = sampler
        return iterator(dataset, batch_sampler=sampler, **kwargs)

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        super().on_batch_end(net, batch=batch, training=training, **kwargs)
        prefix = "train" if training else "valid"
        k, self._batches[bool(training)] = self._batches[bool(training)], self._batches[bool(training)] + 1
        sampler = self._samplers.get(bool(training))
        if current().distributed and sampler is not None:  # epoch losses weigh batches by their global size
            self.history.record_batch(f"{prefix}_batch_size", sampler.global_size(k))
        # the loss skorch has just recorded (already a float: no extra device sync)
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
        self._fitting = True
        if current().distributed:  # the same data and the same starting weights (rank 0's) on every rank
            check_same(len(X), "training structures", "config dataset")
            broadcast_module(self.module_)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)
        self._fitting = False

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        self._acc = {True: _Accumulator(), False: _Accumulator()}
        self._batches = {True: 0, False: 0}

    def _score_train_set(self, dataset) -> _Accumulator:
        """Errors of the current weights on ``dataset`` in evaluation mode (``train_eval``'s quantity only:
        an energy score needs no force pass); this rank's slices only."""
        acc = _Accumulator()
        forces = self.train_eval == "forces" and self.forces
        for batch in self._loader(dataset, False, record=False):
            Xi, _ = unpack_data(batch)
            if not len(Xi):
                continue
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
        # one reduction and one host read per epoch for all splits
        totals = all_reduce_sum(torch.stack([acc.totals(self._reference()) for _, acc in sources])).cpu()
        for (prefix, _), total in zip(sources, totals, strict=True):
            for name, (mae, rmse) in _Accumulator.results_of(total).items():
                for metric, value in (("mae", mae), ("rmse", rmse)):
                    key = f"{prefix}_{name}_{metric}"
                    previous = [row[key] for row in self.history[:-1] if key in row]
                    self.history.record(key, value)
                    self.history.record(f"{key}_best", not previous or value < min(previous))
