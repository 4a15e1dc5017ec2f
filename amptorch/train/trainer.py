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
import random
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import EarlyStopping, GradientNormClipping, LRScheduler
from skorch.helper import predefined_split

from amptorch.data import (
    AtomsDataset,
    EnergyBaseline,
    FeatureScaler,
    collate,
    featurize,
    get_lmdb_dataset,
    read_structures,
    train_val_split,
)
from amptorch.data.dataset import RecordView
from amptorch.descriptors import GMP, Descriptor, GaussianSF
from amptorch.errors import InputError
from amptorch.models import AtomisticModel, build_model
from amptorch.train.callbacks import BestWeights, CSVLog
from amptorch.train.checkpoint import DTYPES, TrainedPotential, write_json
from amptorch.train.config import Config, validate_config
from amptorch.train.net import AtomsLoss, AtomsNet
from amptorch.train.plots import errors, parity_plot


def make_descriptor(dataset_cfg, elements: list[str]) -> Descriptor:
    """The descriptor of ``dataset.fp_scheme`` / ``fp_params`` / ``cutoff_params``."""
    params = dataset_cfg.fp_params
    if dataset_cfg.fp_scheme in ("gmpordernorm", "gmp"):
        if params is None:
            return GMP()
        return GMP.from_amptorch(params, fp_scheme=dataset_cfg.fp_scheme)
    if params is None:
        raise InputError("config dataset.fp_params: missing; expected the Gs dict for fp_scheme 'gaussian'")
    return GaussianSF.from_amptorch(params, elements, dataset_cfg.cutoff_params)


def _pair_collate(records):
    b = collate(records)
    return b, b


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _dataset(records):
    """A torch Dataset of records: checked in memory, or a lazy LMDB view as it is."""
    return records if isinstance(records, RecordView) else AtomsDataset(records)


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
        self.config = validate_config(config)
        self._check_fp_params()
        self.potential: TrainedPotential | None = None
        self.net: AtomsNet | None = None
        self.run_dir: Path | None = None
        self.metrics: dict = {}

    # -- helpers ------------------------------------------------------------
    def _check_fp_params(self) -> None:
        """Build the descriptor once so that bad fp_params fail here, before any data is read."""
        ds = self.config.dataset
        if ds.lmdb_path and ds.raw_data is None:
            return  # the descriptor comes from the database
        if ds.fp_params is None and ds.fp_scheme != "gaussian":
            return  # GMP defaults
        # Gaussian SF need an element list; without one, the per-element keys of "Gs" stand in
        keys = [k for k in (ds.fp_params or {}) if k != "default"]
        try:
            make_descriptor(ds, ds.elements or sorted(keys) or ["H"])
        except InputError as err:
            msg = str(err)
            if not msg.startswith("config "):
                # name the key path as the other config errors do
                msg = f"config dataset.{'' if msg.startswith('fp_params') else 'fp_params.'}{msg}"
            raise InputError(msg) from None

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.config.cmd.dtype]

    @property
    def device(self) -> str:
        o = self.config.optim
        if o.device:
            return o.device
        return "cuda" if o.gpus > 0 and torch.cuda.is_available() else "cpu"

    def _new_run_dir(self) -> Path | None:
        cmd = self.config.cmd
        if cmd.debug:
            return None
        stamp = _dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
        name = f"{stamp}-{cmd.identifier}" if cmd.identifier else stamp
        path = Path(cmd.run_dir) / "checkpoints" / name
        k = 1
        while path.exists():
            path = path.with_name(f"{name}-{k}")
            k += 1
        path.mkdir(parents=True)
        return path

    def _load_data(self, raw_data):
        """(records list or dataset, descriptor, elements)."""
        from ase.data import chemical_symbols

        ds = self.config.dataset
        forces = self.config.model.get_forces and self.config.optim.force_coefficient > 0
        stress = self.config.optim.stress_coefficient > 0
        if raw_data is None and ds.raw_data is None and ds.lmdb_path:
            data = get_lmdb_dataset(ds.lmdb_path, ds.cache)
            # the LMDB holds atomic numbers; the rest of training uses symbols
            descriptor, elements = data.descriptor(), [chemical_symbols[z] for z in data.elements]
            return data, descriptor, elements
        source = raw_data if raw_data is not None else ds.raw_data
        if source is None:
            raise InputError("config dataset.raw_data: missing; expected a list of ase.Atoms or a file path")
        images = read_structures(source)
        elements = ds.elements or sorted({s for a in images for s in a.get_chemical_symbols()})
        descriptor = make_descriptor(ds, elements)
        cache = None
        if ds.save_fps:
            cache = Path(self.config.cmd.run_dir) / ds.fps_dir
        np_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        records = featurize(
            images, descriptor, derivatives=forces or stress, strain=stress, dtype=np_dtype,
            workers=ds.workers, progress=self.config.cmd.verbose, cache_dir=cache, forces=forces, stress=stress,
        )  # fmt: skip
        return records, descriptor, elements

    def _build_model(self, train_records, n_features: int, elements: list[str]) -> tuple[AtomisticModel, dict]:
        from ase.data import atomic_numbers

        m = self.config.model
        sc = self.config.dataset.scaling
        scaler = FeatureScaler.from_config(sc).fit(train_records)
        baseline = EnergyBaseline().fit(train_records)
        options = {
            "elements": sorted(atomic_numbers[e] for e in elements),
            "hidden_layers": m.widths,
            "activation": m.activation,
            "batchnorm": m.batchnorm,
            "dropout": m.dropout,
            "dropout_rate": m.dropout_rate,
            "initialization": m.initialization,
        }
        if m.name == "singlenn":
            options["element_outputs"] = m.element_outputs
        network = build_model(m.name, n_features, **options)
        model = AtomisticModel(
            network,
            feature_shift=scaler.shift, feature_scale=scaler.scale,
            energy_refs=baseline.refs, energy_scale=baseline.energy_scale,
        )  # fmt: skip
        return model.to(dtype=self.dtype), {"name": m.name, "options": options}

    def _callbacks(self, has_val: bool, save) -> list:
        o, cmd = self.config.optim, self.config.cmd
        prefix = "valid" if has_val else "train"
        cp = "forces" if (o.cp_metric == "forces" and self.config.model.get_forces and o.force_coefficient > 0) \
            else "energy"  # fmt: skip
        metric = "rmse" if o.metric == "mse" else "mae"
        monitor = f"{prefix}_{cp}_{metric}"
        cbs: list = [("best", BestWeights(f"{monitor}_best", save=save))]
        if self.run_dir is not None:
            cbs.append(("csv", CSVLog(self.run_dir / "metrics.csv")))
        if o.scheduler:
            policy = getattr(torch.optim.lr_scheduler, o.scheduler["policy"])
            cbs.append(("lr", LRScheduler(policy=policy, monitor=monitor if policy.__name__ == "ReduceLROnPlateau"
                                          else None, **o.scheduler["params"])))  # fmt: skip
        if o.gradient_clipping:
            cbs.append(("clip", GradientNormClipping(gradient_clip_value=o.gradient_clipping)))
        if cmd.early_stopping:
            cbs.append(("early", EarlyStopping(monitor=monitor, patience=cmd.early_stopping_patience,
                                               lower_is_better=True, load_best=False)))  # fmt: skip
        if cmd.logger and self.run_dir is not None:
            from skorch.callbacks import TensorBoard
            from torch.utils.tensorboard import SummaryWriter

            cbs.append(("tensorboard", TensorBoard(SummaryWriter(str(self.run_dir / "tensorboard")))))
        return cbs

    # -- the original's API -------------------------------------------------
    def train(self, raw_data=None) -> AtomsTrainer:
        """Featurize, fit scalers and the energy baseline on the training split, and train."""
        cfg = self.config
        seed_everything(cfg.cmd.seed)
        forces = cfg.model.get_forces and cfg.optim.force_coefficient > 0
        stress = cfg.optim.stress_coefficient > 0
        records, descriptor, elements = self._load_data(raw_data)
        train_idx, val_idx = train_val_split(len(records), cfg.dataset.val_split, cfg.dataset.val_split_mode,
                                             cfg.cmd.seed)  # fmt: skip
        if isinstance(records, list):
            train_records = [records[i] for i in train_idx]
            val_records = [records[i] for i in val_idx]
        else:  # an LMDB: splits read records on access, so data larger than memory trains
            train_records, val_records = RecordView(records, train_idx), RecordView(records, val_idx)
        model, network = self._build_model(train_records, descriptor.length, elements)
        self.run_dir = self._new_run_dir()
        config_json = cfg.to_json()
        self.potential = TrainedPotential(descriptor, model, network, config=config_json)
        if self.run_dir is not None:
            write_json(self.run_dir / "config.json", config_json)

        def save(state):
            self.potential.save(self.run_dir)

        o = cfg.optim
        optimizer_args = {}
        for k, v in (o.optimizer_args or {}).items():
            optimizer_args[k if k.startswith("optimizer__") else f"optimizer__{k}"] = v
        seed_everything(cfg.cmd.seed)
        net = AtomsNet(
            model,
            criterion=self._criterion(forces, float(model.energy_scale)),
            optimizer=getattr(torch.optim, o.optimizer),
            lr=o.lr,
            batch_size=o.batch_size,
            max_epochs=o.epochs,
            train_split=predefined_split(_dataset(val_records)) if len(val_records) else None,
            iterator_train__collate_fn=_pair_collate,
            iterator_train__shuffle=True,
            iterator_valid__collate_fn=_pair_collate,
            callbacks=self._callbacks(len(val_records) > 0, save if self.run_dir is not None else None),
            device=self.device,
            forces=forces,
            stress=stress,
            dtype=self.dtype,
            verbose=int(cfg.cmd.verbose),
            callbacks__print_log__keys_ignored=["event_cp", "batches"],
            **optimizer_args,
        )
        self.net = net
        net.fit(_dataset(train_records), None)
        best = dict(net.callbacks_)["best"]
        if best.best_state is not None:
            model.load_state_dict(best.best_state)
        model.eval()
        self._summarize(train_records, val_records, forces)
        if self.run_dir is not None:
            self.potential.meta["metrics"] = self.metrics
            self.potential.save(self.run_dir)
        return self

    def _criterion(self, forces: bool, energy_scale: float):
        """The loss: ours (the original's CustomLoss) or ``optim.loss_fn``.

        A class is built as the original built its CustomLoss,
        ``loss_fn(force_coefficient=..., loss=...)``; any other callable is used
        as it is. Both are called as ``loss_fn(prediction, batch)`` with the
        model's output dict (``energy`` (B,) eV, ``forces`` (N, 3) eV/Å, ...)
        and the :class:`amptorch.data.Batch` holding the targets.
        """
        o = self.config.optim
        fc = o.force_coefficient if forces else 0.0
        if o.loss_fn is None:
            return AtomsLoss(fc, o.stress_coefficient, o.loss, energy_scale)
        if isinstance(o.loss_fn, type):
            try:
                return o.loss_fn(force_coefficient=fc, loss=o.loss)
            except TypeError as err:
                raise InputError(
                    f"config optim.loss_fn: {o.loss_fn.__name__}(force_coefficient=, loss=) failed ({err}); "
                    "expected a class taking those keywords, or an instance / function"
                ) from None
        if isinstance(o.loss_fn, torch.nn.Module):
            return o.loss_fn
        return _FunctionLoss(o.loss_fn)

    def _summarize(self, train_records, val_records, forces: bool) -> None:
        """Final errors of the best model on each split; parity plots in the run dir."""
        self.metrics = {"best_epoch": dict(self.net.callbacks_)["best"].best_epoch}
        for name, recs in (("train", train_records), ("valid", val_records)):
            if not len(recs):
                continue
            pred = self._predict_records(recs, forces)
            self.metrics[name] = errors(pred, recs)
            if self.run_dir is not None:
                parity_plot(pred, recs, self.run_dir / f"parity_{name}.png", title=name)
        if self.run_dir is not None:
            write_json(self.run_dir / "metrics.json", self.metrics)

    def _predict_records(self, records, forces: bool, batch_size: int = 64) -> dict:
        out: dict[str, list] = {"energy": [], "forces": []}
        for s in range(0, len(records), batch_size):
            chunk = records[s : s + batch_size]
            res = self.potential.evaluate(chunk, forces=forces)
            offsets = np.concatenate([[0], np.cumsum([r.n_atoms for r in chunk])])
            out["energy"] += res["energy"].tolist()
            if forces:
                out["forces"] += [res["forces"][offsets[b] : offsets[b + 1]] for b in range(len(chunk))]
        if not forces:
            del out["forces"]
        return out

    def predict(self, images, disable_tqdm: bool = True, get_latent=None, get_descriptor: bool = False,
                save_fps: bool = False, stress: bool = False, forces: bool | None = None) -> dict:  # fmt: skip
        """The original's predict: {"energy": [...], "forces": [...]} plus ``energies``, ``stress``
        (when asked), ``latent`` (``get_latent`` not None) and ``descriptors``."""
        if self.potential is None:
            raise InputError("predict: no model; call train() or load_pretrained(path) first")
        forces = self.config.model.get_forces if forces is None else forces
        return self.potential.predict(images, forces=forces, stress=stress, latent=get_latent is not None,
                                      descriptors=get_descriptor, progress=not disable_tqdm)  # fmt: skip

    def load_pretrained(self, checkpoint_path, gpu2cpu: bool = False) -> AtomsTrainer:
        """Load a run's checkpoint directory (any device; a GPU checkpoint loads on CPU)."""
        self.potential = TrainedPotential.load(checkpoint_path, device="cpu" if gpu2cpu else self.device)
        if self.potential.config is not None:
            cfg = dict(self.potential.config)
            cfg["dataset"] = {k: v for k, v in cfg["dataset"].items() if k != "raw_data"}
            self.config = validate_config(cfg)
        self.run_dir = Path(checkpoint_path)
        return self

    def get_calc(self):
        """An ase Calculator on the trained model."""
        from amptorch.calculator import AmpTorchCalculator

        if self.potential is None:
            raise InputError("get_calc: no model; call train() or load_pretrained(path) first")
        return AmpTorchCalculator(self.potential)
