"""``cmd.recipe``: what the keys a config leaves out mean. "original" for every config that gives
``fp_params`` (all the original's did), "recommended" (train/recipe.py) for one that leaves them out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amptorch.descriptors import GMP
from amptorch.errors import InputError
from amptorch.potential import errors
from amptorch.train import AtomsTrainer
from amptorch.train.config import validate_config
from amptorch.train.plan import Plan
from amptorch.train.recipe import describe

from .test_config import _error
from .test_resume import _kill_after, _Killed


def test_left_out_fp_params_get_the_recommended_recipe():
    c = validate_config({"dataset": {"raw_data": "train.extxyz"}})
    assert c.cmd.recipe == "recommended"
    assert (c.model.name, c.model.widths, c.model.activation) == ("singlenn", [64, 64], "silu")
    o = c.optim
    assert (o.force_coefficient, o.lr, o.batch_size, o.epochs) == (0.1, 5e-3, 8, 200)
    assert o.scheduler == {"policy": "CosineAnnealingLR", "params": {"T_max": 200, "eta_min": pytest.approx(1e-4)}}
    assert (o.energy_refinement.epochs, o.energy_refinement.force_coefficient) == (200, 0.001)
    assert o.energy_refinement.lr == pytest.approx(1e-4) and o.cp_metric == "energy"
    assert c.dataset.scaling["type"] == "standardize" and not c.dataset.scaling["elementwise"]
    assert c.dataset.val_split == 0.1 and c.dataset.fp_params == "auto" and not c.dataset.save_fps
    assert describe(c).startswith(
        "recipe 'recommended': singlenn [64, 64] silu, force coefficient 0.1, Adam lr "
        "0.005, CosineAnnealingLR, batch 8, 200 epochs + 200 of energy refinement"
    )


def test_given_keys_are_kept_and_derived_ones_follow_them():
    c = validate_config({"model": {"num_layers": 3}, "optim": {"learning_rate": 1e-3, "max_epochs": 50},
                         "dataset": {"val_split": 0.0}})  # fmt: skip
    assert c.model.widths == [20, 20, 20]  # num_layers given: the width is the original's default
    assert (c.optim.lr, c.optim.epochs, c.dataset.val_split) == (1e-3, 50, 0.0)
    assert c.optim.scheduler["params"] == {"T_max": 50, "eta_min": pytest.approx(2e-5)}
    assert (c.optim.energy_refinement.epochs, c.optim.energy_refinement.lr) == (50, pytest.approx(2e-5))
    given = {"policy": "StepLR", "params": {"step_size": 5}}
    c = validate_config({"optim": {"scheduler": given, "energy_refinement": {"epochs": 7}}})
    assert c.optim.scheduler == given and c.optim.energy_refinement.epochs == 7
    assert validate_config({"optim": {"scheduler": None}}).optim.scheduler is None  # given as none: none


def test_values_are_read_as_the_config_check_reads_them():
    """A numpy integer or a number in a string still sizes the schedule and the refinement; 0 and "true" are
    booleans (no refinement without forces or with early stopping)."""
    c = validate_config({"optim": {"epochs": np.int64(30), "lr": "1e-3"}})
    assert c.optim.scheduler["params"] == {"T_max": 30, "eta_min": pytest.approx(2e-5)}
    assert (c.optim.energy_refinement.epochs, c.optim.energy_refinement.lr) == (30, pytest.approx(2e-5))
    assert validate_config({"model": {"get_forces": 0}}).optim.energy_refinement is None
    assert validate_config({"cmd": {"early_stopping": "true"}}).optim.energy_refinement is None


@pytest.mark.parametrize(
    "config",
    [
        {"model": {"get_forces": False}},
        {"optim": {"force_coefficient": 0.0}},
        {"optim": {"cp_metric": "forces"}},
        {"cmd": {"early_stopping": True}},
        {"optim": {"epochs": 0}},
        {"optim": {"loss_fn": lambda prediction, batch: prediction["energy"].sum()}},
    ],
)
def test_no_refinement_where_it_cannot_run(config):
    """Energies only, early stopping, forces picking the kept epoch, a loss of one's own: no refinement phase
    is added (the explicit key would be an error or a warning there)."""
    c = validate_config(config)
    assert c.cmd.recipe == "recommended" and c.optim.energy_refinement is None
    assert c.optim.force_coefficient == (0.0 if config.get("model") or "force_coefficient" in config.get("optim", {})
                                         else 0.1)  # fmt: skip


def test_which_recipe():
    mapping = {"MCSHs": {"orders": [0], "sigmas": [1.0]}, "cutoff": 5.0}
    assert validate_config({"dataset": {"fp_params": mapping}}).cmd.recipe == "original"
    assert validate_config({"dataset": {"fp_params": "AUTO"}}).cmd.recipe == "recommended"
    assert validate_config({"dataset": {"fp_params": None}}).cmd.recipe == "recommended"
    # a store without raw_data: the original read its descriptor from the store too
    assert validate_config({"dataset": {"lmdb_path": "a.lmdb"}}).cmd.recipe == "original"
    assert validate_config({"dataset": {"lmdb_path": "a.lmdb", "raw_data": "x.traj"}}).cmd.recipe == "recommended"
    # named explicitly, either way round
    c = validate_config({"cmd": {"recipe": "Original"}})
    assert (c.cmd.recipe, c.model.name, c.optim.lr, c.optim.force_coefficient) == ("original", "bpnn", 0.1, 0.0)
    c = validate_config({"dataset": {"fp_params": mapping}, "cmd": {"recipe": "recommended"}})
    assert (c.model.name, c.optim.lr, c.dataset.fp_params) == ("singlenn", 5e-3, mapping)
    assert _error({"cmd": {"recipe": "fast"}}).startswith("config cmd.recipe: Input should be 'original' or "
                                                          "'recommended'")  # fmt: skip
    # a descriptor object as fp_params (the original's GMPOrderNorm way) is a given fp_params too
    gmp = GMP.from_amptorch({**mapping, "smooth_cutoff": "cosine"})
    assert Plan.from_config({"dataset": {"fp_params": gmp}}, gmp).config.cmd.recipe == "original"
    # a section that is not a mapping is still reported as such
    assert _error({"optim": [1]}).startswith("config optim:")


def test_untuned_run_trains_the_recipe_and_beats_the_original_defaults(cu_images, cu_test_images, tmp_path):
    """A config naming only the data (and a short run) trains the recipe: a SingleNN on 'auto' GMP with forces,
    then the refinement; its saved config holds every key and validates to the same config; and it predicts
    the held-out forces better than the original's defaults given the same epochs."""
    cmd = {"run_dir": str(tmp_path), "identifier": "untuned", "verbose": False, "seed": 1}
    trainer = AtomsTrainer({"dataset": {"raw_data": cu_images}, "optim": {"epochs": 6}, "cmd": cmd})
    trainer.train()
    history = trainer.net.history
    assert len(history) == 12 and [h["force_coefficient"] for h in history] == [0.1] * 6 + [0.001] * 6
    saved = json.loads((trainer.run_dir / "config.json").read_text())
    assert saved["cmd"]["recipe"] == "recommended" and isinstance(saved["dataset"]["fp_params"], dict)
    assert not (tmp_path / "processed").exists()  # no fingerprint cache unasked
    again = validate_config({**saved, "dataset": {**saved["dataset"], "raw_data": None}})
    assert again.optim == trainer.config.optim and again.model == trainer.config.model
    ours = errors(trainer.predict(cu_test_images), cu_test_images)

    fp = trainer.config.dataset.fp_params
    original = AtomsTrainer({"dataset": {"raw_data": cu_images, "fp_params": fp}, "optim": {"epochs": 12},
                             "cmd": {**cmd, "identifier": "original"}})  # fmt: skip
    assert original.config.cmd.recipe == "original" and original.config.optim.force_coefficient == 0.0
    original.train()
    theirs = errors(original.predict(cu_test_images), cu_test_images)
    assert np.isfinite(ours["forces_mae"]) and ours["forces_mae"] < 0.7 * theirs["forces_mae"]


def test_resume_says_what_the_recipe_derived(cu_images, tmp_path, monkeypatch):
    """A killed run of the recipe resumes; raising optim.epochs is refused with the reason (the recipe sized the
    schedule and the refinement to it); a run saved before cmd.recipe existed resumes under the original's."""
    cfg = {"dataset": {"raw_data": cu_images[:8]}, "optim": {"epochs": 2},
           "cmd": {"run_dir": str(tmp_path), "identifier": "killed", "verbose": False}}  # fmt: skip
    with monkeypatch.context() as m:
        _kill_after(m, 1)
        with pytest.raises(_Killed):
            AtomsTrainer(cfg).train()
    run_dir = next((tmp_path / "checkpoints").iterdir())
    raised = {**cfg, "optim": {"epochs": 3}}
    with pytest.raises(InputError, match=r"the recommended recipe sizes optim.scheduler and "
                                         r"optim.energy_refinement to optim.epochs"):  # fmt: skip
        AtomsTrainer(raised).train(resume=run_dir)
    assert len(AtomsTrainer(cfg).train(resume=run_dir).net.history) == 4

    # a config.json without cmd.recipe (saved before it existed): what it spells out is what it trained
    legacy = {**cfg, "dataset": {**cfg["dataset"], "fp_params": None}, "cmd": {**cfg["cmd"], "identifier": "old"}}
    with monkeypatch.context() as m:
        _kill_after(m, 1)
        with pytest.raises(_Killed):
            AtomsTrainer(legacy).train()
    old_dir = next(d for d in (tmp_path / "checkpoints").iterdir() if d.name.endswith("old"))
    saved = json.loads((old_dir / "config.json").read_text())
    del saved["cmd"]["recipe"]
    (old_dir / "config.json").write_text(json.dumps(saved))
    assert len(AtomsTrainer(legacy).train(resume=old_dir).net.history) == 4
    # the same data-only config with the original's recipe is refused with the hint
    saved["optim"]["lr"] = 0.1
    (old_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(InputError, match=r"the run predates cmd.recipe: give cmd.recipe: original"):
        AtomsTrainer(legacy).train(resume=old_dir)
