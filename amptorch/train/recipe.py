"""Default recipes: what the training keys a config leaves out mean (``cmd.recipe``).

Two recipes fill the ``model`` / ``optim`` / ``dataset`` keys that a config does not give:

* ``"original"``: the original AmpTorch's defaults (BPNN 5×20, Adam at lr 0.1, batch 32, 100
  epochs, energies only, min-max scaling per element). Every config written for the original
  gives ``dataset.fp_params`` (it was required there), so it gets these and trains as before.
* ``"recommended"``: the recipe measured on the mlearn DFT sets (docs/accuracy.md): SingleNN
  64×64 SiLU, forces at coefficient 0.1, Adam at 5e-3 with cosine annealing to lr/50 over 200
  epochs in batches of 8, then as many epochs of ``optim.energy_refinement`` (force coefficient
  0.001 at lr/50), features standardized over all elements, 10 % of the structures for
  validation, no fingerprint cache on disk. Used when ``dataset.fp_params`` is left out (or
  ``"auto"``) next to ``raw_data``: a config written for this package, whose user did not tune.
  (A ``dataset.lmdb_path`` config without ``raw_data`` gets "original": the original read the
  descriptor from its store too.)

``cmd.recipe`` picks one explicitly. A key the config gives is never changed; keys derived
from others (the schedule's length, the refinement's rate) follow the given values. The saved
``config.json`` holds every key explicitly, with the recipe named.
"""

from __future__ import annotations

from typing import Any

# the recommended recipe's own values (docs/accuracy.md: mlearn Li, Mo, Si, Ge)
LAYERS = [64, 64]
ACTIVATION = "silu"
FORCE_COEFFICIENT = 0.1
LR = 5e-3
BATCH_SIZE = 8
EPOCHS = 200
FINAL_LR_RATIO = 0.02  # the cosine schedule ends, and the refinement runs, at lr × this
REFINEMENT_FORCE_COEFFICIENT = 0.001
SCALING = {"type": "standardize", "elementwise": False}
VAL_SPLIT = 0.1


def _read(kind: type, value: Any) -> Any:
    """``value`` as the config check will read it for a key of type ``kind`` ("1e-3" as 0.001, 0 as False,
    a numpy integer as int), or None where it cannot (the check then reports it)."""
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError:
        return None


def recipe_of(config: dict) -> str:
    """The recipe of a raw config dict: ``cmd.recipe`` when given, else "recommended" when
    ``dataset.fp_params`` is left out, None or "auto" and no store stands in for ``raw_data``, else
    "original"."""
    cmd = config.get("cmd")
    given = cmd.get("recipe") if isinstance(cmd, dict) else None
    if given is not None:
        return str(given).lower()
    ds = config.get("dataset")
    ds = ds if isinstance(ds, dict) else {}
    fp = ds.get("fp_params")
    auto = fp is None or (isinstance(fp, str) and fp.lower() == "auto")
    # the original read a store's descriptor from the store, so a store without fp_params says nothing
    store = ds.get("lmdb_path") is not None and ds.get("raw_data") is None
    return "recommended" if auto and not store else "original"


def apply_recipe(config: dict) -> dict:
    """``config`` (a raw dict) with ``cmd.recipe`` set and, for "recommended", the keys it leaves out
    filled. Sections that are not dicts are left for validation to report."""
    recipe = recipe_of(config)
    out = dict(config)
    sections = {}
    for name in ("model", "optim", "dataset", "cmd"):
        section = out.get(name, {})
        if section is None:
            section = {}
        if not isinstance(section, dict):
            return out  # the config check says what is wrong with it
        sections[name] = dict(section)
    sections["cmd"]["recipe"] = recipe
    if recipe == "recommended":
        _recommended(sections["model"], sections["optim"], sections["dataset"], sections["cmd"])
    out.update(sections)
    return out


def _recommended(model: dict, optim: dict, dataset: dict, cmd: dict) -> None:
    """Fill the recommended recipe's values into the keys not given (in place)."""
    model.setdefault("name", "singlenn")
    if not any(k in model for k in ("hidden_layers", "num_layers", "num_nodes")):
        model["hidden_layers"] = list(LAYERS)
    model.setdefault("activation", ACTIVATION)
    forces = _read(bool, model.get("get_forces", True)) is not False
    optim.setdefault("force_coefficient", FORCE_COEFFICIENT if forces else 0.0)
    for key, alias, value in (("lr", "learning_rate", LR), ("epochs", "max_epochs", EPOCHS)):
        if key not in optim:  # an alias alone stands for its key (both given: the config check says so)
            optim[key] = optim.pop(alias, value)
    optim.setdefault("batch_size", BATCH_SIZE)
    lr, epochs = _read(float, optim["lr"]), _read(int, optim["epochs"])
    numbers = lr is not None and epochs is not None
    if "scheduler" not in optim and numbers and epochs > 0:
        optim["scheduler"] = {"policy": "CosineAnnealingLR",
                              "params": {"T_max": epochs, "eta_min": lr * FINAL_LR_RATIO}}  # fmt: skip
    # the refinement only where Plan's _check_refinement and the loss_fn check of the config accept it without
    # a warning (those raise for a refinement the user gives; here it is left out instead)
    refine = (
        numbers
        and epochs > 0
        and forces
        and (_read(float, optim["force_coefficient"]) or 0.0) > 0
        and getattr(optim.get("loss_fn"), "__name__", optim.get("loss_fn")) in (None, "CustomLoss")
        and not _read(bool, cmd.get("early_stopping", False))
        and str(optim.get("cp_metric", "energy")).lower() == "energy"
    )
    if "energy_refinement" not in optim and refine:
        optim["energy_refinement"] = {"epochs": epochs, "force_coefficient": REFINEMENT_FORCE_COEFFICIENT,
                                      "lr": lr * FINAL_LR_RATIO}  # fmt: skip
    dataset.setdefault("scaling", dict(SCALING))
    dataset.setdefault("val_split", VAL_SPLIT)
    # the fingerprint cache holds derivative blocks (1.7 GB for one mlearn set): opt-in, not written unasked
    dataset.setdefault("save_fps", False)


def describe(config) -> str:
    """One line saying what a validated config (``train.config.Config``) trains: printed by a verbose run of
    the recommended recipe, so a user who left keys out sees what they became."""
    m, o, ds = config.model, config.optim, config.dataset
    sched = o.scheduler or {}
    where = f", {sched['policy']}" if sched else ""
    refine = o.energy_refinement
    more = (f" + {refine.epochs} of energy refinement (force coefficient {refine.force_coefficient:g}, "
            f"lr {refine.lr:g})" if refine is not None else "")  # fmt: skip
    return (f"recipe {config.cmd.recipe!r}: {m.name} {m.widths} {m.activation}, force coefficient "
            f"{o.force_coefficient:g}, {o.optimizer} lr {o.lr:g}{where}, batch {o.batch_size}, {o.epochs} epochs"
            f"{more}, val_split {ds.val_split:g}, scaling {ds.scaling['type']} (cmd.recipe; the saved config.json "
            "holds every key)")  # fmt: skip


__all__ = ["apply_recipe", "describe", "recipe_of"]
