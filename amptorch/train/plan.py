"""The settings plan: a validated config resolved once into the values the code uses.

``Config`` (``config.py``) checks the shape and type of every key; ``Plan``
decides what they mean together (are forces trained? which dtype and device?
which network, which descriptor?) so that nothing downstream re-derives a
setting from the raw config. Built by ``AtomsTrainer`` before any data is read,
so a bad ``fp_params`` fails there, naming its key path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from amptorch.descriptors import Descriptor
from amptorch.descriptors.registry import DescriptorEntry, by_scheme
from amptorch.errors import InputError
from amptorch.potential.trained import DTYPES, numpy_dtype
from amptorch.train.config import Config, validate_config


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
    _descriptors: dict[tuple[str, ...] | None, Descriptor] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: dict | Config | None) -> Plan:
        """Validate ``config`` (if it is a dict) and resolve it; InputError naming the key path."""
        cfg = validate_config(config)
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
            descriptor_entry=by_scheme(ds.fp_scheme),
        )
        if not (ds.lmdb_path and ds.raw_data is None):  # an LMDB brings its own descriptor
            plan._build(ds.elements)  # bad fp_params fail now, before any data is read
        return plan

    @property
    def np_dtype(self) -> type:
        return numpy_dtype(self.dtype)

    def monitor(self, has_validation: bool) -> str:
        """The history key that decides the best epoch (``valid_forces_mae``, ``train_energy_rmse``, ...)."""
        return f"{'valid' if has_validation else 'train'}_{self.monitor_metric}"

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
        """The descriptor of ``dataset.fp_scheme`` / ``fp_params`` for these elements (built once)."""
        return self._build(list(elements))


__all__ = ["Plan"]
