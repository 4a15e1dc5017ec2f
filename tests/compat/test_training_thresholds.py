"""The original AmpTorch's ``amptorch/tests/training_test.py`` energy-only case, across seeds.

Its data (100 EMT-labelled CuCO images, Cu-C-O distance 2-5 Å), its config
(Gaussian SF, standardized features, 3 x 20 BPNN, Adam lr 1e-2, batch 30,
300 epochs, MAE loss, no validation split) and its threshold: energy MAE
< 0.02 eV over the training images. Before the best epoch was scored on its
own final weights (``train_eval``), a run without a validation split kept the
epoch with the lowest *running* training MAE, which no single set of weights
had: the kept model's MAE was 0.008-0.026 over seeds 0-9 (0.0264 at seed 0,
0.0212 at seed 1, the original's own seed); now 0.0085-0.0112.
"""

from __future__ import annotations

import numpy as np
import pytest

from amptorch.trainer import AtomsTrainer
from tests.compat.conftest import GS, cuco


@pytest.fixture(scope="module")
def original_images():
    return cuco(np.linspace(2, 5, 100))


def original_config(images, run_dir, seed: int, forces: bool = False, val_split: float = 0.0) -> dict:
    """training_test.py's config (its energy-only or its energy+forces case); debug: no checkpoint files."""
    return {
        "model": {"get_forces": forces, "num_layers": 3, "num_nodes": 20},
        "optim": {"force_coefficient": 0.04 if forces else 0.0, "lr": 1e-2, "batch_size": 30, "epochs": 300,
                  "loss": "mse" if forces else "mae", "metric": "mae"},
        "dataset": {"raw_data": images, "val_split": val_split, "elements": ["Cu", "C", "O"], "fp_scheme": "gaussian",
                    "fp_params": GS, "scaling": {"type": "standardize"}, "save_fps": False},
        "cmd": {"debug": True, "seed": seed, "identifier": "test", "verbose": False, "logger": False,
                "run_dir": str(run_dir)},
    }  # fmt: skip


def errors(trainer, images) -> tuple[float, float]:
    pred = trainer.predict(images)
    e = np.mean(np.abs(np.array(pred["energy"]) - [a.get_potential_energy() for a in images]))
    if "forces" not in pred or not trainer.config.model.get_forces:
        return float(e), float("nan")
    f = np.mean(np.abs(np.concatenate(pred["forces"]) - np.concatenate([a.get_forces() for a in images])))
    return float(e), float(f)


def test_kept_weights_are_the_best_scored_epoch(original_images, tmp_path):
    """Without a validation split the kept weights are those of the epoch whose final weights scored best on the
    training set (``train_eval_energy_mae``), and that score is the kept model's."""
    cfg = original_config(original_images, tmp_path, seed=0)
    cfg["optim"]["epochs"] = 30
    trainer = AtomsTrainer(cfg).train()
    scores = trainer.net.history[:, "train_eval_energy_mae"]
    assert trainer.metrics["best_epoch"] == int(np.argmin(scores)) + 1
    assert trainer.metrics["train"]["energy_mae"] == pytest.approx(min(scores), rel=1e-8)


# seeds 0-2 in the default run, 3-9 with -m slow
@pytest.mark.parametrize("seed", [pytest.param(k, marks=pytest.mark.slow) if k > 2 else k for k in range(10)])
def test_energy_only_below_the_originals_threshold(original_images, tmp_path, seed):
    trainer = AtomsTrainer(original_config(original_images, tmp_path, seed)).train()
    e_mae, _ = errors(trainer, original_images)
    assert e_mae < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_energy_and_forces_below_the_originals_thresholds(original_images, tmp_path, seed):
    """Its energy+forces case (no validation split): the best epoch is still picked by energy (cp_metric)."""
    trainer = AtomsTrainer(original_config(original_images, tmp_path, seed, forces=True)).train()
    e_mae, f_mae = errors(trainer, original_images)
    assert e_mae < 0.01 and f_mae < 0.03
