"""Training-side uncertainty: an ensemble trained by one ``AtomsTrainer.train()`` call, and the UQ state
(stored training latents, MC-dropout samples) put into the run's checkpoint.

Members share the descriptor, the feature scaler and the energy baseline
(fitted once on the training split, as a single run) and differ in the seed
of their initial weights and batch order (``cmd.seed + m``) and, with
``uq.bootstrap``, in their training sample (a resample with replacement of
the training split, drawn with the same seed). Member 0 is the run's own
model: its epochs are checkpointed and logged (``model.pt``,
``metrics.csv``, ``resume.pt``) as a single run's; the others train without
run files. The other members train in ``uq.ensemble_workers`` spawned worker
processes (default: one per core beside the main process's; each on one torch
thread) and in the main process, which after member 0 takes every
(workers + 1)-th member, so M members take ceil(M / (workers + 1)) members'
time (waiting idle on the pool's queue, 5 members on 2 cores took 4
members' time); a script then needs the
usual ``if __name__ == "__main__":`` guard, as for any spawned process. With
``ensemble_workers: 0``, a single core, or an LMDB split, they train one after
another in the main process.
"""

from __future__ import annotations

import os
import pickle
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import torch

from amptorch.data.dataset import RecordView
from amptorch.errors import InputError
from amptorch.models import AtomisticModel, build_model


def bootstrap_indices(n: int, seed: int) -> np.ndarray:
    """(n,) indices drawn with replacement from range(n), deterministic for ``seed``."""
    return np.random.default_rng(seed).integers(0, n, size=n)


def member_records(train_records, seed: int, bootstrap: bool):
    """The training records of one member: the split itself, or its bootstrap resample (lazy for a RecordView)."""
    if not bootstrap:
        return train_records
    idx = bootstrap_indices(len(train_records), seed)
    if isinstance(train_records, RecordView):
        return RecordView(train_records.source, [train_records.indices[i] for i in idx])
    return [train_records[i] for i in idx]


def new_member(base: AtomisticModel, network: dict, seed: int) -> AtomisticModel:
    """A freshly initialized member (weights from ``seed``) sharing ``base``'s scaler tables and baseline."""
    torch.manual_seed(seed)
    net = build_model(network["name"], base.n_features, **network["options"])
    dtype, device = base.feature_shift.dtype, base.feature_shift.device
    model = AtomisticModel(net.to(dtype=dtype), base.feature_shift, base.feature_scale, base.energy_refs,
                           base.energy_scale)  # fmt: skip
    model.set_twin(base.twin)  # recompute mode: the same torch twin features its geometry batches
    return model.to(device=device, dtype=dtype)


def _fit(trainer, model: AtomisticModel, records, val_records, seed: int) -> tuple[AtomisticModel, object]:
    """Train one member's model in place on ``records`` (best epoch's weights loaded); returns (model, net)."""
    from amptorch.train.trainer import _dataset, seed_everything

    net = trainer._new_net(model, val_records)
    seed_everything(seed)
    net.fit(_dataset(records), None)
    best = dict(net.callbacks_)["best"]
    if best.best_state is not None:
        model.load_state_dict(best.best_state)
    return model.eval(), net


def _fit_in_worker(config: dict, model_state: dict, network: dict, records, val_records, seed: int) -> dict:
    """Worker process: one member trained from its initial weights; returns its network's state dict."""
    from amptorch.train.trainer import AtomsTrainer

    torch.set_num_threads(1)
    trainer = AtomsTrainer(config)
    trainer.run_dir = None  # members after the first write no run files
    net = build_model(network["name"], int(model_state["feature_shift"].shape[1]), **network["options"])
    model = AtomisticModel(net).to(dtype=model_state["feature_shift"].dtype)
    model.load_state_dict(model_state)
    model, _ = _fit(trainer, model, records, val_records, seed)
    return {k: v.detach().cpu() for k, v in model.network.state_dict().items()}


def train_ensemble(trainer, raw_data=None, resume=None):
    """``AtomsTrainer.train()`` with ``uq.ensemble`` = M > 1: M members into one checkpoint directory.

    ``model.pt`` holds member 0, ``ensemble.pt`` every member (``amptorch.uq.state``); the checkpoint
    predicts the members' mean (``TrainedPotential.predictor``), and the final metrics (``metrics.json``,
    the parity plots) are the mean's, plus ``metrics["member0"]`` (train / valid) of member 0 alone.
    """
    from amptorch.train.callbacks import RESUME_FILE
    from amptorch.train.trainer import score
    from amptorch.uq.ensemble import Ensemble

    if resume is not None:
        raise InputError("resume: an ensemble run (uq.ensemble > 1) cannot be resumed; train it again",
                         "train")  # fmt: skip
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError("uq.ensemble > 1 under torchrun: train the members in one process (ensemble_workers "
                         "for parallel members)", "config uq.ensemble")  # fmt: skip
    trainer.load(raw_data=raw_data)
    cfg = trainer.config  # fp_params "auto" resolved by load()
    train_records, val_records = trainer._splits
    pot = trainer.potential
    run_dir = trainer.run_dir
    members, bootstrap, seed0 = cfg.uq.ensemble, cfg.uq.bootstrap, cfg.cmd.seed
    seeds = [seed0 + m for m in range(members)]
    initial = [pot.model] + [new_member(pot.model, pot.network, s) for s in seeds[1:]]
    records = [member_records(train_records, s, bootstrap) for s in seeds]
    workers = cfg.uq.ensemble_workers
    if workers is None:  # one per core beside the main process's
        workers = len(os.sched_getaffinity(0)) - 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) - 1
    workers = min(workers, members - 1)
    pending = None
    config = None
    if workers >= 1 and isinstance(train_records, list):  # list splits only: an LMDB handle is not sent
        config = cfg.model_dump()
        config["cmd"] = {**config["cmd"], "debug": True}
        config["dataset"] = {**config["dataset"], "raw_data": None}  # the records are sent instead
        config["uq"] = {**config["uq"], "ensemble": 1, "latent": False}
        try:  # what the workers get travels pickled (in memory, our own objects): a descriptor object or a
            pickle.dumps(config)  # lambda loss in the config cannot, and then the members train here
        except Exception as err:
            warnings.warn(f"uq.ensemble_workers: the config cannot be sent to worker processes ({err}); "
                          "training the members one after another", stacklevel=3)  # fmt: skip
            config = None
    here = range(1, members)  # the members this process trains after member 0 (all of them without workers)
    if config is not None:
        # the main process is a worker too: member m goes to it when m % (workers + 1) == 0, else to the pool, so
        # the wall time is ceil(M / (workers + 1)) members (it would wait idle for the pool's queue otherwise)
        here = [m for m in range(1, members) if m % (workers + 1) == 0]
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        pending = {m: pool.submit(_fit_in_worker, config, {k: v.cpu() for k, v in initial[m].state_dict().items()},
                                  pot.network, records[m], val_records, seeds[m])
                   for m in range(1, members) if m not in here}  # fmt: skip
    net0 = None
    try:
        _, net0 = _fit(trainer, pot.model, records[0], val_records, seeds[0])  # member 0: the run's own files
        trainer.net = net0
        trainer.run_dir = None  # the other members write no run files
        for m in here:
            _fit(trainer, initial[m], records[m], val_records, seeds[m])
        for m, fut in (pending or {}).items():
            initial[m].network.load_state_dict(fut.result())
            initial[m].eval()
    finally:
        trainer.run_dir = run_dir
        if net0 is not None:
            trainer.net = net0
        if pending is not None:
            pool.shutdown(cancel_futures=True)
    # member 0's errors, scored before the ensemble is in (no plots or files: _summarize writes the mean's)
    member0 = {name: score(pot, recs, trainer.plan.forces)[0]
               for name, recs in (("train", train_records), ("valid", val_records)) if len(recs)}  # fmt: skip
    ensemble = Ensemble([m.network for m in initial], seeds=seeds, bootstrap=bootstrap)
    store_uq(trainer, train_records, ensemble)
    trainer._summarize(train_records, val_records)  # the checkpoint's prediction: the members' mean
    trainer.metrics["member0"] = member0
    if run_dir is not None:
        pot.meta["metrics"] = trainer.metrics
        pot.save(run_dir, weights=True, config=False)
        (run_dir / RESUME_FILE).unlink(missing_ok=True)
    return trainer


class GeometryFeatures:
    """A recompute-mode split (geometry records) read as FeatureRecords without derivatives: each slice
    featurized on access, so storing the training latents never holds the split's features."""

    def __init__(self, split, descriptor, dtype, workers: int | None = None):
        self.split, self.descriptor, self.dtype, self.workers = split, descriptor, dtype, workers

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: slice) -> list:
        from amptorch.data import GeometryDataset

        indices = self.split.indices[index]
        source = self.split.source
        raw = source.records.__getitem__ if isinstance(source, GeometryDataset) else source.raw
        atoms = [raw(i).to_atoms() for i in indices]
        return self.descriptor.compute_many(atoms, derivatives=False, dtype=self.dtype,
                                            workers=self.workers, progress=False, indices=indices)  # fmt: skip


def store_uq(trainer, train_records, ensemble=None) -> None:
    """Put the configured UQ state into the trainer's potential (saved with its checkpoint): the ensemble,
    the training latents (``uq.latent``) and the MC-dropout samples (``uq.dropout_samples``)."""
    from amptorch.uq.latent import LatentDistance

    cfg = trainer.config
    state = trainer.potential.uq
    state.dropout_samples = cfg.uq.dropout_samples
    if ensemble is not None:
        state.ensemble = ensemble
    if cfg.uq.latent:
        records = train_records
        if trainer.plan.recompute:  # geometry records: the latents need features (computed without derivatives)
            records = GeometryFeatures(train_records, trainer.potential.descriptor, trainer.plan.np_dtype,
                                       cfg.dataset.workers)  # fmt: skip
        state.latent = LatentDistance(**cfg.uq.latent, seed=cfg.cmd.seed).fit(trainer.potential, records)


__all__ = ["bootstrap_indices", "member_records", "new_member", "store_uq", "train_ensemble"]
