"""The settings plan: a validated config resolved once into the values the code uses.

``Config`` (``config.py``) checks the shape and type of every key; ``Plan``
decides what they mean together (are forces trained? which dtype and device?
which network, which descriptor?) so that nothing downstream re-derives a
setting from the raw config. Built by ``AtomsTrainer`` before any data is read,
so a bad ``fp_params`` fails there, naming its key path.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from amptorch.descriptors import Descriptor
from amptorch.descriptors.defaults import auto_params, nearest_neighbor_distance
from amptorch.descriptors.registry import DescriptorEntry, by_scheme, entry_of
from amptorch.errors import InputError
from amptorch.potential.trained import DTYPES, numpy_dtype
from amptorch.train.config import Config, validate_config
from amptorch.train.recipe import apply_recipe


@dataclass
class Plan:
    """What a training run does, resolved from its config.

    Attributes:
        config: the validated config it came from.
        forces: forces are predicted and fitted (``model.get_forces`` and ``force_coefficient > 0``).
        stress: stress is fitted (``stress_coefficient > 0``).
        dtype: torch dtype of the model and batches; ``np_dtype`` its numpy twin.
        device: "cpu", "cuda", "cuda:1", ...
        network: "singlenn" or "bpnn"; ``network_options`` its keyword arguments
            except ``elements`` (known once the data is read).
        monitor_metric: the metric of the best checkpoint, early stopping and plateau
            schedules, without the split prefix (e.g. "forces_mae").
        optimizer: a ``torch.optim`` class; ``optimizer_args`` skorch's ``optimizer__*`` keywords.
        descriptor_entry: the registry entry ``dataset.fp_scheme`` selects.
        recompute: ``dataset.features == "recompute"``: records hold geometry and labels, and the
            descriptor's torch twin computes the features in each training step (no derivative blocks).
    """

    config: Config
    forces: bool
    stress: bool
    dtype: torch.dtype
    device: str
    network: str
    network_options: dict[str, Any]
    monitor_metric: str
    optimizer: type
    optimizer_args: dict[str, Any]
    descriptor_entry: DescriptorEntry
    recompute: bool = False
    given: Descriptor | None = None  # the descriptor to train on as it is, when one was given
    _descriptors: dict[tuple[str, ...] | None, Descriptor] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: dict | Config | None, descriptor: Descriptor | None = None) -> Plan:
        """Validate ``config`` (if it is a dict) and resolve it; InputError naming the key path.

        ``descriptor``: train on this descriptor as it is (a loaded checkpoint's, or an object given as
        ``dataset.fp_params``, see :func:`given_descriptor`); ``fp_scheme`` / ``fp_params`` are then not
        read, and the config records the descriptor's scheme.
        """
        if descriptor is not None and isinstance(config, dict):  # fp_params may be the object itself
            # the recipe is that of the config as given (a descriptor object in fp_params is the original's way)
            config = apply_recipe(config)
            ds = {k: v for k, v in dict(config.get("dataset") or {}).items() if k != "fp_params"}
            config = {**config, "dataset": ds}
        cfg = validate_config(config)
        if descriptor is not None:  # the config records what is trained on
            scheme = entry_of(descriptor).schemes[0]
            cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"fp_scheme": scheme,
                                                                                    "fp_params": None})})
        m, o, ds = cfg.model, cfg.optim, cfg.dataset
        forces = m.get_forces and o.force_coefficient > 0
        options = {
            "hidden_layers": m.widths,
            "activation": m.activation,
            "batchnorm": m.batchnorm,
            "dropout": m.dropout,
            "dropout_rate": m.dropout_rate,
            "initialization": m.initialization,
        }
        if m.name == "singlenn":
            options["element_outputs"] = m.element_outputs
        device = o.device or ("cuda" if o.gpus > 0 and torch.cuda.is_available() else "cpu")
        cp = "forces" if (o.cp_metric == "forces" and forces) else "energy"
        plan = cls(
            config=cfg,
            forces=forces,
            stress=o.stress_coefficient > 0,
            dtype=DTYPES[cfg.cmd.dtype],
            device=device,
            network=m.name,
            network_options=options,
            monitor_metric=f"{cp}_{'rmse' if o.metric == 'mse' else 'mae'}",
            optimizer=getattr(torch.optim, o.optimizer),
            optimizer_args={f"optimizer__{k.removeprefix('optimizer__')}": v
                            for k, v in (o.optimizer_args or {}).items()},  # fmt: skip
            descriptor_entry=entry_of(descriptor) if descriptor is not None else by_scheme(ds.fp_scheme),
            recompute=ds.features == "recompute",
        )
        if o.energy_refinement is not None:
            _check_refinement(cfg, forces)
        if plan.recompute:
            plan._check_recompute()
        if descriptor is not None:
            plan.given = descriptor
        elif plan.auto and ds.nn_distance is not None:  # "auto" at a given scale: resolved (and checked) now
            plan.resolve_fp_params()
        elif ds.lmdb_path and ds.raw_data is None:  # a fingerprint LMDB brings its own descriptor
            pass  # (a geometry store resolves "auto" once it is opened)
        elif plan.auto:  # resolved from the data once it is read; say now if the scheme has no default
            try:
                auto_params(plan.descriptor_entry, 1.0)
            except InputError as err:
                raise err.within("config dataset") from None
        else:
            plan._build(ds.elements)  # bad fp_params fail now, before any data is read
        return plan

    @property
    def epochs(self) -> int:
        """Epochs in all: ``optim.epochs`` plus those of ``optim.energy_refinement``."""
        o = self.config.optim
        return o.epochs + (o.energy_refinement.epochs if o.energy_refinement is not None else 0)

    @property
    def auto(self) -> bool:
        """``dataset.fp_params`` is still ``"auto"`` (no descriptor given, not resolved yet)."""
        return self.given is None and self.config.dataset.fp_params == "auto"

    def resolve_fp_params(self, images: Sequence | None = None, nn_distance: float | None = None,
                          fp_params: dict | None = None) -> None:  # fmt: skip
        """Replace ``fp_params: "auto"`` by the scheme's defaults (``amptorch.descriptors.defaults``) scaled to
        the nearest-neighbour distance: ``nn_distance`` or ``dataset.nn_distance`` when given, else measured on
        ``images`` (ase.Atoms; at most 256 of them read). ``fp_params``: adopt these (a resumed run's own
        settings) instead. The config then records both, so a checkpoint, ``config.json`` and a resumed run
        see the settings trained on. Nothing happens when ``fp_params`` is not "auto"."""
        if not self.auto:
            return
        ds = self.config.dataset
        d_nn = nn_distance if nn_distance is not None else ds.nn_distance
        if d_nn is None:
            if images is None:
                raise InputError("'auto' needs the training structures (or dataset.nn_distance, Å)",
                                 "config dataset.fp_params")  # fmt: skip
            try:
                d_nn = round(nearest_neighbor_distance(images), 4)
            except InputError as err:
                raise err.within("config dataset.fp_params 'auto'") from None
        if fp_params is None:
            try:
                fp_params = auto_params(self.descriptor_entry, d_nn)
            except InputError as err:
                raise err.within("config dataset") from None
        update = {"fp_params": fp_params, "nn_distance": d_nn}
        self.config = self.config.model_copy(update={"dataset": ds.model_copy(update=update)})
        self._descriptors.clear()
        self._build(ds.elements)  # checked now

    def _check_recompute(self) -> None:
        """Recompute mode needs geometry (raw_data or a geometry store, not an LMDB of fingerprints) and a
        descriptor with a torch twin."""
        ds = self.config.dataset
        if ds.lmdb_path and ds.raw_data is None and not _geometry_store(ds.lmdb_path):
            raise InputError(
                "'recompute' with dataset.lmdb_path: an LMDB store of fingerprints holds derivative blocks, "
                "not geometry; expected 'stored' with it, or a geometry store (amptorch featurize --geometry), "
                "or raw_data (a list of ase.Atoms or a file) for 'recompute'",
                "config dataset.features",
            )
        if self.descriptor_entry.twin is None:
            raise _no_twin(self.descriptor_entry)

    def twin(self, descriptor: Descriptor, elements: list[int]):
        """The descriptor's torch twin for these atomic numbers (recompute mode); InputError naming the key."""
        entry = entry_of(descriptor)
        if entry.twin is None:
            raise _no_twin(entry)
        try:
            return entry.twin(descriptor, list(elements))
        except InputError as err:
            raise InputError(f"'recompute': {err}", "config dataset.features") from None

    @property
    def np_dtype(self) -> type:
        return numpy_dtype(self.dtype)

    def monitor(self, has_validation: bool) -> str:
        """The history key that decides the best epoch, early stopping and plateau schedules.

        With a validation split, its metric (``valid_forces_mae``, ...). Without one, the end-of-epoch
        weights scored on the training set (``train_eval_energy_mae``, ...: see :meth:`train_eval`),
        not the running training metric, which no single set of weights had.
        """
        return f"valid_{self.monitor_metric}" if has_validation else f"train_eval_{self.monitor_metric}"

    def train_eval(self, has_validation: bool) -> str | None:
        """What ``AtomsNet`` scores on the training set after each epoch ("energy" or "forces"), or None."""
        return None if has_validation else self.monitor_metric.split("_")[0]

    def _build(self, elements: list[str] | None) -> Descriptor | None:
        key = None if elements is None or not self.descriptor_entry.needs_elements else tuple(elements)
        if key not in self._descriptors:
            ds = self.config.dataset
            try:
                desc = self.descriptor_entry.from_params(
                    ds.fp_params, ds.fp_scheme, elements, ds.cutoff_params.model_dump()
                )
            except InputError as err:
                raise err.within("config dataset.fp_params") from None
            if desc is None:  # validated only: it needs the elements
                return None
            self._descriptors[key] = desc
        return self._descriptors[key]

    def descriptor(self, elements: list[str]) -> Descriptor:
        """The given descriptor, or that of ``dataset.fp_scheme`` / ``fp_params`` for these elements (built once;
        ``fp_params: "auto"`` must be resolved first, see :meth:`resolve_fp_params`)."""
        if self.given is not None:
            return self.given
        if self.auto:
            raise InputError("'auto' is not resolved yet; expected resolve_fp_params(images) first",
                             "config dataset.fp_params")  # fmt: skip
        return self._build(list(elements))


def _check_refinement(cfg: Config, forces: bool) -> None:
    """``optim.energy_refinement`` needs force training and no early stopping (which would end the run
    before the refinement, or count the first phase's misses against it); with ``cp_metric: "forces"`` the
    refinement's epochs are kept only where their forces are better, which is rarely (a warning)."""
    where = "config optim.energy_refinement"
    if not forces:
        raise InputError("lowers the force coefficient after optim.epochs; expected force training "
                         "(model.get_forces and optim.force_coefficient > 0)", where)  # fmt: skip
    if cfg.cmd.early_stopping:
        raise InputError("a phase after optim.epochs; expected cmd.early_stopping false with it (early stopping "
                         "would end the run before the refinement)", where)  # fmt: skip
    if cfg.optim.cp_metric == "forces":
        warnings.warn("optim.energy_refinement with optim.cp_metric 'forces': the refinement trades force error "
                      "for energy error, so its epochs are seldom kept; expected cp_metric 'energy'", stacklevel=3)


def _geometry_store(path) -> bool:
    """Whether ``dataset.lmdb_path`` names one geometry store (a file or a sharded folder) that can be read."""
    from amptorch.data.shards import store_metadata

    if not isinstance(path, str):
        return False
    try:
        return store_metadata(path).get("kind") == "geometry"
    except InputError:
        return False


def _no_twin(entry: DescriptorEntry) -> InputError:
    return InputError(
        f"'recompute': the descriptor {entry.kind} has no torch twin (its registry entry's twin); "
        "expected 'stored' for it",
        "config dataset.features",
    )


def given_descriptor(config) -> Descriptor | None:
    """The descriptor object a config dict gives as ``dataset.fp_params`` (ours, the original-named
    ``Gaussian`` / ``GMPOrderNorm``, or anything with ``to_descriptor()`` such as a
    ``GaussianDescriptorSet``), or None for the original's parameter dict."""
    ds = config.get("dataset") if isinstance(config, dict) else None
    fp = ds.get("fp_params") if isinstance(ds, dict) else None
    if isinstance(fp, Descriptor):
        return fp
    return fp.to_descriptor() if hasattr(fp, "to_descriptor") else None


__all__ = ["Plan", "given_descriptor"]
