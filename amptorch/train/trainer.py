"""AtomsTrainer: the original AmpTorch's entry point, on our data, models and skorch net.

    trainer = AtomsTrainer(config)   # model / optim / dataset / cmd dict, validated first
    trainer.train()                  # featurize (cached), fit scalers + baseline, train
    trainer.predict(images)          # {"energy": [...], "forces": [...], ...}
    trainer.get_calc()               # ase Calculator

Unlike the original, ``predict`` works in every mode (debug included) and
nothing changes the working directory: ``cmd.run_dir`` is only where run
directories are written.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import EarlyStopping, GradientNormClipping
from skorch.helper import predefined_split
from skorch.history import History

from amptorch.data import (
    AtomsDataset,
    EnergyBaseline,
    FeatureScaler,
    GeometryDataset,
    collate,
    featurize,
    get_lmdb_dataset,
    read_structures,  # fmt: skip
    train_val_split,
)
from amptorch.data.dataset import RecordView
from amptorch.data.lmdb_convert import ours
from amptorch.data.streaming import EnergyStats, FeatureStats
from amptorch.errors import InputError
from amptorch.files import atomic_write, write_json
from amptorch.models import AtomisticModel, build_model
from amptorch.potential import TrainedPotential
from amptorch.potential.metrics import ErrorSums, Labels
from amptorch.potential.plots import parity_plot
from amptorch.train import distributed
from amptorch.train.callbacks import (
    RESUME_FILE,
    RESUME_FORMAT,
    BestWeights,
    CSVLog,
    EnergyRefinement,
    PhaseLRScheduler,
    ResumeState,
    WeightAverage,
)
from amptorch.train.config import Config
from amptorch.train.net import AtomsLoss, AtomsNet, TrainingDiverged, empty_batch
from amptorch.train.plan import Plan, given_descriptor

# structures drawn in a split's parity plot (a uniform stride over larger splits): what is kept while a split
# is scored chunk by chunk, so scoring 10^6 structures holds (and fragments the heap with) only this many
PARITY_MAX = 5_000


def score(potential: TrainedPotential, records, forces: bool) -> tuple[dict, dict, list]:
    """(errors, predictions, labels) of a split scored chunk by chunk: the errors of all its structures, the
    predictions and labels of every stride-th one (at most PARITY_MAX, copied) for the parity plot."""
    sums, stride, k = ErrorSums(), -(-len(records) // PARITY_MAX), 0
    shown: dict[str, list] = {key: [] for key in (("energy", "forces") if forces else ("energy",))}
    labels: list[Labels] = []
    for pred, chunk_labels in potential.evaluate_chunks(records, forces=forces):
        sums.add(pred, chunk_labels)
        keep = [j for j in range(len(chunk_labels)) if (k + j) % stride == 0]
        k += len(chunk_labels)
        for key in shown:  # copies: a view would keep the chunk's whole array alive
            shown[key] += [np.array(pred[key][j]) for j in keep]
        for lab in (chunk_labels[j] for j in keep):
            f = None if lab.forces is None else np.array(lab.forces)
            labels.append(Labels(np.array(lab.numbers), lab.energy, f))
    return sums.result(), shown, labels


def _pair_collate(records):
    # no records: a rank's empty slice of a short last batch (data-parallel training)
    b = collate(records) if len(records) else empty_batch()
    return b, b


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _dataset(records):
    """A torch Dataset of records: checked in memory, or a lazy LMDB view as it is."""
    return records if isinstance(records, RecordView) else AtomsDataset(records)


class _StoredStructures(Sequence):
    """A geometry store's structures as ase.Atoms, read on access (what ``fp_params: "auto"`` measures)."""

    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return self.data.raw(index).to_atoms()


class _FunctionLoss(torch.nn.Module):
    """A loss function as a module: skorch builds non-module criteria as classes."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, pred: dict, batch) -> torch.Tensor:
        return self.fn(pred, batch)


class AtomsTrainer:
    """Train a SingleNN / BPNN potential from the original AmpTorch config dict.

    Args:
        config: {"model": {...}, "optim": {...}, "dataset": {...}, "cmd": {...}};
            every key optional except ``dataset.raw_data`` (or ``lmdb_path``)
            at train time. See docs/user_guide.md for every key.
    """

    def __init__(self, config: dict | Config | None = None):
        # every key checked, fp_params included, before any data (or fp_params is a descriptor object)
        self.plan = Plan.from_config(config, given_descriptor(config))
        self._config_given = config is not None
        self.pretrained = False  # load_pretrained(): train() continues from the loaded potential
        self._pretrained_from: str | None = None
        self._splits: tuple = ([], [])
        self.potential: TrainedPotential | None = None
        self.net: AtomsNet | None = None
        self.run_dir: Path | None = None
        self.metrics: dict = {}
        self._resume: tuple[Path, dict] | None = None  # (run dir, resume state) while train(resume=...) runs

    @property
    def config(self) -> Config:
        """The validated config (``self.plan`` holds what it resolves to)."""
        return self.plan.config

    @property
    def cp_dir(self) -> str | None:
        """The original's name for this run's checkpoint directory (``run_dir``; None with ``cmd.debug``)."""
        return None if self.run_dir is None else str(self.run_dir)

    @property
    def dtype(self) -> torch.dtype:
        return self.plan.dtype

    @property
    def device(self) -> str:
        return self.plan.device

    def _new_run_dir(self) -> Path | None:
        """The run directory (None with ``cmd.debug``): made by rank 0 alone; the other ranks of a distributed
        run get its path from rank 0 (``cmd.run_dir`` on a file system every rank sees)."""
        cmd = self.config.cmd
        if cmd.debug:
            return None
        if self._resume is not None:
            return self._resume[0]
        world = distributed.setup(self.plan.device)
        path = None
        if world.main:
            stamp = _dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
            name = f"{stamp}-{cmd.identifier}" if cmd.identifier else stamp
            path = Path(cmd.run_dir) / "checkpoints" / name
            k = 1
            while path.exists():
                path = path.with_name(f"{name}-{k}")
                k += 1
            path.mkdir(parents=True)
        return Path(distributed.broadcast_text(None if path is None else str(path)))

    def _ranks_in_turn(self):
        """Around reading and featurizing the data: in a distributed run that writes while reading (the
        fingerprint cache ``dataset.save_fps`` in stored mode, or the conversion of an original AmpTorch LMDB
        named in ``lmdb_path``), rank 0 goes first and fills the cache, then the other ranks read it, so no
        two processes write one file; otherwise every rank reads its data at once."""
        ds, world = self.config.dataset, distributed.setup(self.plan.device)
        writes = (ds.save_fps and not self.plan.recompute) or bool(ds.lmdb_path)
        return distributed.main_first(writes and world.distributed)

    def _load_data(self, raw_data):
        """(records list or dataset, descriptor, elements)."""
        from ase.data import chemical_symbols

        plan, ds = self.plan, self.config.dataset
        if raw_data is None and ds.raw_data is None and ds.lmdb_path:
            # a pickled store of the original AmpTorch is converted once (restricted unpickler) and cached in the
            # run dir, or with cmd.debug (nothing written there) in the temporary directory
            cmd = self.config.cmd
            cache = Path(tempfile.gettempdir()) / "amptorch-converted" if cmd.debug else Path(cmd.run_dir) / "converted"
            data = get_lmdb_dataset(ours(ds.lmdb_path, cache), ds.cache)
            if data.kind == "geometry":  # geometry and labels: recompute mode, neighbour lists built per item
                return self._geometry_store(data)
            # the LMDB holds atomic numbers; the rest of training uses symbols
            descriptor, elements = data.descriptor(), [chemical_symbols[z] for z in data.elements]
            if plan.given is not None and descriptor.hash != plan.given.hash:
                raise InputError(
                    f"featurized with {descriptor!r}; expected the fingerprints of the model's descriptor "
                    f"{plan.given!r}", "config dataset.lmdb_path",
                )  # fmt: skip
            return data, descriptor, elements
        source = raw_data if raw_data is not None else ds.raw_data
        if source is None:
            raise InputError("missing; expected a list of ase.Atoms or a file path", "config dataset.raw_data")
        images = read_structures(source)
        self._resolve_auto(images)
        elements = ds.elements or sorted({s for a in images for s in a.get_chemical_symbols()})
        descriptor = plan.descriptor(elements)
        if plan.recompute:  # geometry and labels only: neighbour lists built per item, features per step
            for k, atoms in enumerate(images):
                descriptor.check_elements(atoms.numbers, k)
            data = GeometryDataset(images, descriptor.cutoff, forces=plan.forces, stress=plan.stress)
            return data, descriptor, elements
        cache = Path(self.config.cmd.run_dir) / ds.fps_dir if ds.save_fps else None
        records = featurize(
            images, descriptor, derivatives=plan.forces or plan.stress, strain=plan.stress, dtype=plan.np_dtype,
            workers=ds.workers, progress=self.config.cmd.verbose, cache_dir=cache, forces=plan.forces,
            stress=plan.stress,
        )  # fmt: skip
        return records, descriptor, elements

    def _resolve_auto(self, images) -> None:
        """``fp_params: "auto"``: the scheme's defaults scaled to the data's nearest-neighbour distance (said
        when verbose; recorded in the config)."""
        if not self.plan.auto:
            return
        self.plan.resolve_fp_params(images)
        ds = self.config.dataset
        if self.config.cmd.verbose and distributed.is_main():
            print(f"fp_params 'auto' (nearest-neighbour distance {ds.nn_distance:g} Å): {json.dumps(ds.fp_params)}")

    def _geometry_store(self, data) -> tuple:
        """(dataset, descriptor, elements) of a geometry store (single file or sharded): recompute mode only;
        the descriptor is the config's, for the store's elements (or ``dataset.elements``)."""
        from ase.data import chemical_symbols

        plan, ds = self.plan, self.config.dataset
        if not plan.recompute:
            raise InputError(f"{ds.lmdb_path!r} is a geometry store (no fingerprints); expected 'recompute' to train "
                             "from it", "config dataset.features")  # fmt: skip
        meta = data.metadata
        for label, needed in (("forces", plan.forces), ("stress", plan.stress)):
            if needed and not meta.get(label):
                raise InputError(f"the geometry store {ds.lmdb_path!r} holds no {label} labels; expected a store "
                                 f"built with {label} (or train without them)", "config dataset.lmdb_path")  # fmt: skip
        elements = ds.elements or [chemical_symbols[z] for z in data.elements]
        self._resolve_auto(_StoredStructures(data))
        descriptor = plan.descriptor(elements)
        try:
            descriptor.check_elements(np.asarray(data.elements, dtype=np.int64))
        except InputError as err:
            raise err.within("config dataset.lmdb_path") from None
        return data.neighbors_within(descriptor.cutoff), descriptor, elements

    def _fit_records(self, train_records, descriptor, chunk: int = 256) -> tuple[FeatureStats, EnergyStats]:
        """Feature statistics and energy sums of the training split, in one pass of ``chunk`` records at a time
        (never the whole split in memory): its records, or in recompute mode its geometry records (no
        neighbour lists) and their features computed without derivatives (C++ kernel)."""
        features, energies = FeatureStats(), EnergyStats()
        source = getattr(train_records, "source", None)
        for start in range(0, len(train_records), chunk):
            positions = range(start, min(len(train_records), start + chunk))
            if not self.plan.recompute:
                records = [train_records[k] for k in positions]
                features.update_records(records, start)
                energies.update_records(records, start)
                continue
            indices = [train_records.indices[k] for k in positions]
            raw = source.records.__getitem__ if isinstance(source, GeometryDataset) else source.raw
            geometry = [raw(i) for i in indices]
            feats = descriptor.compute_many([g.to_atoms() for g in geometry], derivatives=False,
                                            dtype=self.plan.np_dtype, workers=self.config.dataset.workers,
                                            progress=False, indices=indices)  # fmt: skip
            features.update_records(feats, start)
            energies.update_records(geometry, start)
        return features, energies

    def _build_model(self, train_records, descriptor, elements: list[str]) -> tuple[AtomisticModel, dict]:
        from ase.data import atomic_numbers

        plan = self.plan
        features, energies = self._fit_records(train_records, descriptor)
        scaler = FeatureScaler.from_config(self.config.dataset.scaling).fit_stats(features)
        baseline = EnergyBaseline().fit_stats(energies)
        n_features = descriptor.length
        options = {"elements": sorted(atomic_numbers[e] for e in elements), **plan.network_options}
        network = build_model(plan.network, n_features, **options)
        model = AtomisticModel(
            network,
            feature_shift=scaler.shift, feature_scale=scaler.scale,
            energy_refs=baseline.refs, energy_scale=baseline.energy_scale,
        )  # fmt: skip
        return model.to(dtype=plan.dtype), {"name": plan.network, "options": options}

    def _callbacks(self, has_val: bool, save) -> list:
        o, cmd = self.config.optim, self.config.cmd
        monitor = self.plan.monitor(has_val)
        main = distributed.is_main()  # only rank 0 writes; every rank takes the same decisions
        cbs: list = [("best", BestWeights(f"{monitor}_best", save=save if main else None))]
        if o.ema_decay is not None:  # after "best" (which keeps the averaged weights), before "resume"
            cbs.append(("ema", WeightAverage(o.ema_decay)))
        if self.run_dir is not None and main:
            cbs.append(("csv", CSVLog(self.run_dir / "metrics.csv")))
        if o.scheduler:
            policy = getattr(torch.optim.lr_scheduler, o.scheduler["policy"])
            scheduler = PhaseLRScheduler(policy=policy, monitor=monitor if policy.__name__ == "ReduceLROnPlateau"
                                         else None, **o.scheduler["params"])  # fmt: skip
            if o.energy_refinement:  # (the plan refused it without force training)
                scheduler.stop_after_ = o.epochs  # the refinement holds its own rate
            cbs.append(("lr", scheduler))
        if o.gradient_clipping:
            cbs.append(("clip", GradientNormClipping(gradient_clip_value=o.gradient_clipping)))
        if o.energy_refinement:
            r = o.energy_refinement
            cbs.append(("refine", EnergyRefinement(o.epochs, r.force_coefficient, r.lr)))
        if cmd.early_stopping:
            cbs.append(("early", EarlyStopping(monitor=monitor, patience=cmd.early_stopping_patience,
                                               lower_is_better=True, load_best=False)))  # fmt: skip
        if self.run_dir is not None:  # written after every epoch, so the last of the net's own callbacks
            cbs.append(("resume", ResumeState(self.run_dir / RESUME_FILE, write=main)))
        if cmd.logger and self.run_dir is not None and main:
            from skorch.callbacks import TensorBoard
            from torch.utils.tensorboard import SummaryWriter

            cbs.append(("tensorboard", TensorBoard(SummaryWriter(str(self.run_dir / "tensorboard")))))
        return cbs

    # -- the original's API -------------------------------------------------
    def load(self, load_dataset: bool = True, raw_data=None) -> AtomsTrainer:
        """The original's ``load()``: everything ``train()`` does before fitting, without fitting.

        Reads and featurizes the data, splits it, fits the feature scaler and
        the energy baseline on the training split and builds the model (after
        :meth:`load_pretrained`: keeps the loaded potential's descriptor,
        scaler tables, baseline and weights), makes the run directory
        (``cp_dir``) and the skorch net (``self.net``). ``predict`` and the
        calculator work on the untrained model. ``load_dataset=False`` only
        wraps a loaded potential in a net.
        """
        cfg = self.config
        seed_everything(cfg.cmd.seed)
        if not load_dataset:
            if self.potential is None:
                raise InputError("no model to wrap without data; call load_pretrained(path) first", "load")
            self._splits = ([], [])
            self.net = self._new_net(self.potential.model, [])
            return self
        with self._ranks_in_turn():
            records, descriptor, elements = self._load_data(raw_data)
        cfg = self.config  # fp_params "auto" is resolved now
        try:
            train_idx, val_idx = train_val_split(len(records), cfg.dataset.val_split, cfg.dataset.val_split_mode,
                                                 cfg.cmd.seed)  # fmt: skip
        except InputError as err:
            if cfg.cmd.recipe != "recommended" or err.path != "val_split":
                raise
            raise InputError(f"{err.message} (the recommended recipe's; give dataset.val_split: 0 for so few "
                             "structures)", "config dataset.val_split") from None  # fmt: skip
        if isinstance(records, list):
            train_records = [records[i] for i in train_idx]
            val_records = [records[i] for i in val_idx]
        else:  # an LMDB (or geometry): splits read records on access, so data larger than memory trains
            train_records, val_records = RecordView(records, train_idx), RecordView(records, val_idx)
        meta = {}
        if self.pretrained and self.potential is not None:  # fine-tuning: scalers and baseline are kept
            model, network = self.potential.model, self.potential.network
            meta["fine_tuned_from"] = self._pretrained_from
        else:
            model, network = self._build_model(train_records, descriptor, elements)
        # recompute mode: the twin features geometry batches (held outside the weights; the checkpoint is the
        # same as in stored mode and the calculator keeps its own path)
        model.set_twin(self.plan.twin(descriptor, model.elements) if self.plan.recompute else None)
        self.run_dir = self._new_run_dir()
        self.potential = TrainedPotential(descriptor, model, network, meta=meta, config=cfg.to_json())
        if self.run_dir is not None and distributed.is_main():
            write_json(self.run_dir / "config.json", self.potential.config)
        self._splits = (train_records, val_records)
        self.net = self._new_net(model, val_records)
        return self

    def _new_net(self, model: AtomisticModel, val_records) -> AtomsNet:
        cfg, plan, o = self.config, self.plan, self.config.optim
        world = distributed.setup(plan.device)  # under torchrun: this rank's device (cuda:LOCAL_RANK)

        def save(state):  # the best epoch's weights, as it happens (config.json is already there)
            self.potential.save(self.run_dir, config=False)

        return AtomsNet(
            model,
            criterion=self._criterion(float(model.energy_scale)),
            optimizer=plan.optimizer,
            lr=o.lr,
            batch_size=o.batch_size,
            max_epochs=plan.epochs,
            train_split=predefined_split(_dataset(val_records)) if len(val_records) else None,
            iterator_train__collate_fn=_pair_collate,
            iterator_train__shuffle=True,
            iterator_valid__collate_fn=_pair_collate,
            callbacks=self._callbacks(len(val_records) > 0, save if self.run_dir is not None else None),
            device=world.device,
            forces=plan.forces,
            stress=plan.stress,
            train_eval=plan.train_eval(len(val_records) > 0),
            verbose=int(cfg.cmd.verbose and world.main),
            callbacks__print_log__keys_ignored=["event_cp", "batches"],
            **self._loader_workers(),
            **plan.optimizer_args,
        )

    def _loader_workers(self) -> dict:
        """Recompute mode with ``dataset.workers`` > 1: that many DataLoader worker processes build the
        neighbour lists (kept between epochs); otherwise the main process loads batches."""
        workers = self.config.dataset.workers
        if not (self.plan.recompute and workers and workers > 1):
            return {}
        return {f"iterator_{split}__{k}": v for split in ("train", "valid")
                for k, v in (("num_workers", workers), ("persistent_workers", True))}  # fmt: skip

    def _read_resume(self, run_dir) -> tuple[Path, dict]:
        """(run dir, resume state) of a killed run made with this config (``optim.epochs`` may be raised,
        ``cmd.verbose`` may differ); InputError otherwise."""
        run_dir = Path(run_dir)
        where = "train resume"
        if self.config.cmd.debug:
            raise InputError("cmd.debug writes no run directory, so there is nothing to resume", where)
        if self.pretrained:
            raise InputError("cannot resume after load_pretrained(); resume the run with its own config", where)
        try:
            saved = json.loads((run_dir / "config.json").read_text())
        except FileNotFoundError:
            raise InputError(f"{run_dir}: no config.json; expected the run directory of a training run",
                             where) from None  # fmt: skip
        except (OSError, ValueError) as err:
            raise InputError(f"{run_dir}/config.json: unreadable ({err})", where) from None
        run = (saved.get("dataset") or {}) if isinstance(saved, dict) else {}
        ds = self.config.dataset
        # the run's "auto" settings as they were resolved then, not measured again (adopted once the configs match)
        adopt = self.plan.auto and isinstance(run.get("fp_params"), dict) and bool(run.get("nn_distance")) and (
            run.get("fp_scheme") == ds.fp_scheme and ds.nn_distance in (None, run["nn_distance"])
        )
        given = json.loads(json.dumps(self.config.to_json(), default=str))
        # a run made before cmd.recipe existed trained the original's defaults, which its config.json spells out
        legacy = isinstance(saved, dict) and "recipe" not in (saved.get("cmd") or {})
        if legacy:
            given["cmd"].pop("recipe", None)
        if adopt:
            given["dataset"].update(fp_params=run["fp_params"], nn_distance=run["nn_distance"])
        epochs = self.plan.epochs
        # optim.epochs may be raised (not with an energy refinement after them: its start would move);
        # verbosity changes nothing trained
        for cfg in (saved, given):
            if not self.config.optim.energy_refinement:
                cfg.get("optim", {}).pop("epochs", None)
            cfg.get("cmd", {}).pop("verbose", None)
        # compared key by key: a key added to the config since the run was made reads as its null default
        keys = sorted(f"{sec}.{k}" for sec in set(saved) | set(given)
                      for k in set(saved.get(sec) or {}) | set(given.get(sec) or {})
                      if (saved.get(sec) or {}).get(k) != (given.get(sec) or {}).get(k))  # fmt: skip
        if keys:
            may = "" if self.config.optim.energy_refinement else " (only optim.epochs may be raised)"
            recommended = self.config.cmd.recipe == "recommended"
            if recommended and set(keys) <= {"optim.epochs", "optim.scheduler", "optim.energy_refinement"}:
                may += ("; the recommended recipe sizes optim.scheduler and optim.energy_refinement to optim.epochs, "
                        "so raising it changes them too: train again, or give them as the run's config.json has them")
            if recommended and legacy:
                may += "; the run predates cmd.recipe: give cmd.recipe: original to train what it trained"
            raise InputError(f"{run_dir}: the run was made with another config (differs at {', '.join(keys)}); "
                             f"expected the same config{may}", where)  # fmt: skip
        path = run_dir / RESUME_FILE
        if not path.is_file():
            done = (run_dir / "metrics.json").is_file()
            why = ("the run finished (model.pt and metrics.json are final)" if done
                   else "the run was stopped before its first epoch ended: start it again")  # fmt: skip
            raise InputError(f"{run_dir}: no {RESUME_FILE}; {why}", where)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same input error
            raise InputError(f"{path}: unreadable ({type(err).__name__}: {err}); start the run again", where) from None
        if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
            raise InputError(f"{path}: not a resume state of this amptorch version; start the run again", where)
        if epochs < state["epoch"]:
            raise InputError(f"optim.epochs gives {epochs} epochs in all, but the run has done {state['epoch']}; "
                             f"expected >= {state['epoch']}", where)  # fmt: skip
        if adopt:
            self.plan.resolve_fp_params(nn_distance=run["nn_distance"], fp_params=run["fp_params"])
        return run_dir, state

    def _resume_net(self, net: AtomsNet, state: dict) -> None:
        """Put the net where the killed run was after its last finished epoch (see ``ResumeState``)."""
        net.initialize()
        net.history = History(json.loads(state["history"]))
        dict(net.callbacks_)["resume"].restore(net, state)
        csv = self.run_dir / "metrics.csv"  # a row (or half a row) written after resume.pt is dropped
        if csv.is_file() and distributed.is_main():
            lines = csv.read_text().splitlines(keepends=True)[: state["epoch"] + 1]
            atomic_write(csv, lambda fh: fh.write("".join(lines).encode()))

    def train(self, raw_data=None, resume=None) -> AtomsTrainer:
        """Featurize, fit scalers and the energy baseline on the training split, and train (see :meth:`load`).

        After :meth:`load_pretrained` training continues from the loaded
        weights on ``raw_data`` (or the config's data) with this config's
        ``optim`` settings; the loaded descriptor, scaler tables and energy
        baseline are kept, not refitted.

        ``resume``: the run directory of a killed run made with this config
        (``optim.epochs`` may be raised, not with an energy refinement). Its data and model are rebuilt as
        here (the featurization cache makes that cheap), its ``resume.pt``
        (written after every epoch, deleted when a run finishes) is loaded,
        and training goes on from the next epoch in the same run directory
        with the same random stream: the result equals an uninterrupted run's.
        """
        cfg = self.config
        if cfg.cmd.verbose and cfg.cmd.recipe == "recommended" and distributed.is_main():
            from amptorch.train.recipe import describe

            print(describe(cfg))
        if cfg.uq.ensemble > 1:  # M members into one checkpoint (amptorch.train.ensemble)
            from amptorch.train.ensemble import train_ensemble

            return train_ensemble(self, raw_data, resume)
        world = distributed.setup(self.plan.device)  # a process group when started by torchrun
        self._resume = self._read_resume(resume) if resume is not None else None
        try:
            self.load(raw_data=raw_data)
        finally:
            state = self._resume[1] if self._resume is not None else None
            self._resume = None
        train_records, val_records = self._splits
        net, model = self.net, self.potential.model
        seed_everything(cfg.cmd.seed)
        try:
            if state is None:
                net.fit(_dataset(train_records), None)
            else:
                self._resume_net(net, state)
                net.partial_fit(_dataset(train_records), None, epochs=self.plan.epochs - state["epoch"])
        except TrainingDiverged:  # keep the last finite best weights in memory (they are on disk already)
            best = dict(net.callbacks_)["best"]
            if best.best_state is not None:
                model.load_state_dict(best.best_state)
            model.eval()
            raise
        best = dict(net.callbacks_)["best"]
        if best.best_state is not None:
            model.load_state_dict(best.best_state)
        model.eval()
        if world.main:  # every rank holds the same best weights; rank 0 scores them and writes the files
            self._summarize(train_records, val_records)
        if world.distributed:  # rank 0's final metrics on every rank
            self.metrics = json.loads(distributed.broadcast_text(json.dumps(self.metrics) if world.main else None))
        if world.main and (cfg.uq.latent or cfg.model.dropout):  # UQ state saved with the checkpoint
            from amptorch.train.ensemble import store_uq

            store_uq(self, train_records)
        if self.run_dir is not None:  # the best weights are on disk already: only the metrics are new
            self.potential.meta["metrics"] = self.metrics
            if world.main:
                self.potential.save(self.run_dir, weights=best.best_state is None, config=False)
                (self.run_dir / RESUME_FILE).unlink(missing_ok=True)  # a finished run needs no resume state
        if world.distributed:  # rank 0's files are complete when train() returns on any rank
            distributed.barrier()
        return self

    def _criterion(self, energy_scale: float):
        """The loss: ours (the original's CustomLoss) or ``optim.loss_fn``.

        A class is built as the original built its CustomLoss,
        ``loss_fn(force_coefficient=..., loss=...)``; any other callable is used
        as it is. Both are called as ``loss_fn(prediction, batch)`` with the
        model's output dict (``energy`` (B,) eV, ``forces`` (N, 3) eV/Å, ...)
        and the :class:`amptorch.data.Batch` holding the targets.
        """
        o = self.config.optim
        fc = o.force_coefficient if self.plan.forces else 0.0
        if o.loss_fn is None:
            return AtomsLoss(fc, o.stress_coefficient, o.loss, energy_scale)
        if isinstance(o.loss_fn, type):
            try:
                return o.loss_fn(force_coefficient=fc, loss=o.loss)
            except TypeError as err:
                raise InputError(
                    f"{o.loss_fn.__name__}(force_coefficient=, loss=) failed ({err}); "
                    "expected a class taking those keywords, or an instance / function",
                    "config optim.loss_fn",
                ) from None
        if isinstance(o.loss_fn, torch.nn.Module):
            return o.loss_fn
        return _FunctionLoss(o.loss_fn)

    def _summarize(self, train_records, val_records) -> None:
        """Final errors of the best model on each split (each record read once); parity plots in the run dir."""
        self.metrics = {"best_epoch": dict(self.net.callbacks_)["best"].best_epoch}
        for name, recs in (("train", train_records), ("valid", val_records)):
            if not len(recs):
                continue
            self.metrics[name], shown, labels = score(self.potential, recs, self.plan.forces)
            if self.run_dir is not None:
                parity_plot(shown, labels, self.run_dir / f"parity_{name}.png", title=name)
        if self.run_dir is not None:
            write_json(self.run_dir / "metrics.json", self.metrics)

    def predict(self, images, disable_tqdm: bool = True, get_latent=None, get_descriptor: bool = False,
                save_fps: bool = False, stress: bool = False, forces: bool | None = None,
                uncertainty: str | None = None) -> dict:  # fmt: skip
        """The original's predict: {"energy": [...], "forces": [...]} plus ``energies``, ``stress``
        (when asked), ``latent`` (``get_latent`` not None) and ``descriptors``.

        ``uncertainty`` ("ensemble", "dropout", "latent"): also ``energy_uncertainty`` [eV per structure],
        ``forces_uncertainty`` [(n,) eV/Å per atom], calibrated where the checkpoint is (``calibrated``), and
        the raw ``energy_std`` / ``forces_std`` (``amptorch.uq.UQState.predict_like``; docs/uncertainty.md).
        """
        if self.potential is None:
            raise InputError("no model; call train() or load_pretrained(path) first", "predict")
        forces = self.config.model.get_forces if forces is None else forces
        if uncertainty is not None:
            return self.potential.uq.predict_like(images, uncertainty, forces=forces, stress=stress,
                                                  latent=get_latent is not None, descriptors=get_descriptor,
                                                  progress=not disable_tqdm)  # fmt: skip
        return self.potential.predict(images, forces=forces, stress=stress, latent=get_latent is not None,
                                      descriptors=get_descriptor, progress=not disable_tqdm)  # fmt: skip

    def load_pretrained(self, checkpoint_path, gpu2cpu: bool = False) -> AtomsTrainer:
        """Load a run's checkpoint directory (any device; a GPU checkpoint loads on CPU).

        ``predict`` and ``get_calc`` then use it, and ``train(raw_data)``
        continues from its weights (fine-tuning) with its descriptor, scaler
        tables and energy baseline. A trainer made without a config takes the
        checkpoint's config (its data left out); with a config, that config's
        ``optim`` / ``cmd`` / data settings are used and its ``fp_scheme`` /
        ``fp_params`` / ``model`` keys give way to the checkpoint's.
        """
        potential = TrainedPotential.load(checkpoint_path, device="cpu" if gpu2cpu else self.device)
        if not self._config_given and potential.config is not None:
            cfg = dict(potential.config)
            cfg["dataset"] = {k: v for k, v in cfg["dataset"].items() if k != "raw_data"}
            # a full dump: one saved before cmd.recipe existed was trained with the original's defaults
            cfg["cmd"] = {"recipe": "original", **(cfg.get("cmd") or {})}
        else:
            cfg = self.config
        self.plan = Plan.from_config(cfg, potential.descriptor)
        self.potential = potential
        self.pretrained = True
        self._pretrained_from = str(checkpoint_path)
        self.run_dir = Path(checkpoint_path)
        return self

    def get_calc(self, **kwargs):
        """An ase Calculator on the trained model (``kwargs``: AmpTorchCalculator's, e.g. ``n_threads``)."""
        from amptorch.potential import AmpTorchCalculator

        if self.potential is None:
            raise InputError("no model; call train() or load_pretrained(path) first", "get_calc")
        return AmpTorchCalculator(self.potential, **kwargs)
