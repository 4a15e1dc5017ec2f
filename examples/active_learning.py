"""Active learning for copper: MD on the model selects what EMT (standing in for DFT) labels next.

    python examples/active_learning.py              # a few minutes on 2 CPU cores
    python examples/active_learning.py --quick      # about a minute

1. Initial data: gently rattled (0.03-0.08 Å) and strained fcc Cu32 cells
   labelled with EMT: what a first DFT batch near equilibrium looks like. A
   quarter is held out to calibrate the uncertainty (split conformal, 90 %).
2. Each round (``amptorch.uq.active.ActiveLearner``): train a 3-member
   ensemble in one ``AtomsTrainer`` call (``uq.ensemble: 3``), calibrate its
   σ, score it on a fixed test set (EMT MD frames at 300-1200 K, never
   trained on), then run Langevin MD driven by the model through
   ``AmpTorchCalculator(uncertainty="ensemble")``, hotter each round
   (600 → 1200 K). Snapshots whose calibrated force σ (largest atom, eV/Å)
   exceeds the threshold are labelled with EMT and added to the data; MD
   stops after ``max_select`` of them (or when σ exceeds 4x the threshold).
3. The last row is the model trained on everything selected.

Prints the per-round table: training frames, test energy and force MAE, MD
snapshots checked, frames selected, the largest σ seen; writes the checkpoints
and ``results.json`` (the rows) into ``--out``. The test errors
shrink as the data follows the MD into the hotter configurations the first
model never saw.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

MODES = {
    "quick": {"n_initial": 40, "rounds": 2, "epochs": 60, "steps": 300, "max_select": 6, "n_test_per_t": 6},
    "full": {"n_initial": 48, "rounds": 4, "epochs": 100, "steps": 600, "max_select": 8, "n_test_per_t": 10},
}
THRESHOLD = 0.12  # eV/Å: calibrated σ of the worst atom's force above which a frame is worth a DFT call
TEMPERATURES = (600, 800, 1000, 1200)  # K, round by round


def config(epochs: int) -> dict:
    """SingleNN on GMP (7 Å cosine-smoothed cutoff, as the demo), energies and forces, 3 ensemble members."""
    return {
        "model": {"name": "singlenn", "get_forces": True, "num_layers": 2, "num_nodes": 24},
        "optim": {"force_coefficient": 0.1, "lr": 5e-3, "batch_size": 8, "epochs": epochs, "loss": "mse"},
        "dataset": {"raw_data": None, "val_split": 0, "fp_scheme": "gmpordernorm",
                    "fp_params": {"MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.4, 0.8, 1.2, 1.6, 2.0]},
                                  "cutoff": 7.0, "smooth_cutoff": "cosine"},
                    "save_fps": False, "scaling": {"type": "standardize", "elementwise": False}},
        "cmd": {"debug": False, "seed": 1, "identifier": "al", "verbose": False, "logger": False},
        "uq": {"ensemble": 3},
    }  # fmt: skip


def trainer_fit(cfg: dict, run_dir: str | Path):
    """``fit(images) -> TrainedPotential``: a fresh AtomsTrainer on ``images`` (the loop retrains from scratch)."""
    from amptorch.trainer import AtomsTrainer

    def fit(images):
        c = copy.deepcopy({k: v for k, v in cfg.items() if k != "dataset"})
        c["dataset"] = {**cfg["dataset"], "raw_data": images}
        c["cmd"]["run_dir"] = str(run_dir)
        trainer = AtomsTrainer(c)
        trainer.train()
        return trainer.potential

    return fit


def initial_data(n: int, seed: int = 0) -> list:
    """``n`` EMT-labelled Cu32 cells, strained by up to 1 %, rattled by 0.03-0.08 Å."""
    from amptorch.testing import fcc_bulk, label_emt

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = fcc_bulk("Cu", 3.61, (2, 2, 2), deform=np.eye(3) + rng.uniform(-0.01, 0.01, (3, 3)), rattle=0.0)
        atoms.positions += rng.normal(0, rng.uniform(0.03, 0.08), atoms.positions.shape)
        frames.append(label_emt(atoms))
    return frames


def test_data(per_t: int, seed: int = 100) -> list:
    """EMT Langevin MD frames of Cu32 at 300, 600, 900 and 1200 K (``per_t`` each, 40 fs apart)."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin

    from amptorch.testing import fcc_bulk, label_emt
    from amptorch.uq.active import thermalize

    frames = []
    for k, temp in enumerate((300, 600, 900, 1200)):
        atoms = fcc_bulk("Cu", 3.61, (2, 2, 2), rattle=0.0)
        atoms.calc = EMT()
        rng = np.random.RandomState(seed + k)
        thermalize(atoms, temp, rng)
        dyn = Langevin(atoms, 2 * units.fs, temperature_K=temp, friction=0.02, fixcm=False, rng=rng)
        dyn.run(100)
        for _ in range(per_t):
            dyn.run(20)
            frames.append(label_emt(atoms.copy()))
    return frames


def main(argv=None) -> dict:
    import torch
    from ase.calculators.emt import EMT

    from amptorch.files import write_json
    from amptorch.testing import fcc_bulk
    from amptorch.uq.active import ActiveLearner, langevin_driver

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer frames, rounds and epochs")
    p.add_argument("--threshold", type=float, default=THRESHOLD, help="calibrated force σ, eV/Å")
    p.add_argument("--out", default=None, help="output directory (default: a temporary one)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (small networks gain little from more)")
    a = p.parse_args(argv)
    mode = "quick" if a.quick else "full"
    m = MODES[mode]

    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="amptorch-al-"))
    threads_before = torch.get_num_threads()
    torch.set_num_threads(a.threads)
    try:
        start = fcc_bulk("Cu", 3.61, (2, 2, 2), rattle=0.0)
        learner = ActiveLearner(
            fit=trainer_fit(config(m["epochs"]), out),
            md_driver=langevin_driver(start, TEMPERATURES, steps=m["steps"], interval=5),
            labeler=EMT(),
            threshold=a.threshold,
            method="ensemble",
            criterion="forces",
            max_select=m["max_select"],
            test_images=test_data(m["n_test_per_t"]),
        )
        result = learner.run(initial_data(m["n_initial"]), rounds=m["rounds"])
    finally:
        torch.set_num_threads(threads_before)
    print()
    print(result.table())
    first, last = result.rounds[0], result.rounds[-1]
    print(f"\ntest force MAE {first.forces_mae:.4f} -> {last.forces_mae:.4f} eV/Å, energy MAE "
          f"{1000 * first.energy_mae:.2f} -> {1000 * last.energy_mae:.2f} meV/atom with "
          f"{len(result.selected)} labelled frames")  # fmt: skip
    results = {"mode": mode, "threshold": a.threshold, "rounds": [asdict(r) for r in result.rounds],
               "selected": len(result.selected), "run_dir": str(result.potential.path)}  # fmt: skip
    write_json(out / "results.json", results)
    print(f"results in {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
