"""The README's main job: generate EMT-labelled Cu, train a small potential, print test errors.

    amptorch demo            (or: python -m amptorch.demo)

Data: rattled and strained fcc Cu cells (32 and 108 atoms, some with a
vacancy) labelled with ASE's EMT calculator, made here so nothing is
downloaded. Model: SingleNN on GMP fingerprints, trained on energies and
forces; the test split is never seen in training.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def label_emt(atoms):
    """``atoms`` with its EMT energy (eV), forces (eV/Å) and stress (eV/Å^3) frozen on a
    SinglePointCalculator, as ``ase.io.read`` gives labelled frames."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = EMT()
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
    return atoms


def make_cu_emt(
    n: int = 240,
    seed: int = 0,
    a: float = 3.6,
    big_every: int = 3,
    vacancy_every: int = 5,
    rattle: float | None = None,
) -> list:
    """``n`` EMT-labelled fcc Cu cells, deterministic for a seed.

    Each is a 2x2x2 conventional cell (32 atoms; every ``big_every``-th a 3x3x3
    one, 108 atoms; 0: none) of lattice constant ``a`` (Å), with one atom
    removed in every ``vacancy_every``-th (0: none), strained by up to 2 % and
    rattled by a normal of ``rattle`` Å (None: a width drawn in 0.03–0.12 Å
    per cell). Labels by :func:`label_emt`.
    """
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        reps = (3, 3, 3) if big_every and k % big_every == 0 else (2, 2, 2)
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(reps)
        if vacancy_every and k % vacancy_every == 0:
            del atoms[int(rng.integers(len(atoms)))]
        strain = np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        width = rng.uniform(0.03, 0.12) if rattle is None else rattle
        atoms.positions += rng.normal(0.0, width, atoms.positions.shape)
        frames.append(label_emt(atoms))
    return frames


def demo_config(images, epochs: int = 150, run_dir: str = "runs/demo", quiet: bool = False) -> dict:
    """An original-style AmpTorch config for the demo."""
    return {
        "model": {"name": "singlenn", "get_forces": True, "num_layers": 2, "num_nodes": 32, "activation": "tanh"},
        "optim": {"force_coefficient": 0.1, "lr": 5e-3, "batch_size": 16, "epochs": epochs, "loss": "mse",
                  "scheduler": {"policy": "CosineAnnealingLR", "params": {"T_max": epochs, "eta_min": 2e-4}}},
        "dataset": {"raw_data": images, "val_split": 0.1, "fp_scheme": "gmpordernorm",
                    "fp_params": {"MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.4, 0.8, 1.2, 1.6, 2.0]},
                                  "cutoff": 7.0},
                    "save_fps": False, "scaling": {"type": "standardize", "elementwise": False}},
        "cmd": {"debug": False, "run_dir": run_dir, "seed": 1, "identifier": "demo", "verbose": not quiet,
                "dtype": "float64"},
    }  # fmt: skip


def run_demo(n_train: int = 200, n_test: int = 60, epochs: int = 150, run_dir: str = "runs/demo",
             quiet: bool = False) -> dict:  # fmt: skip
    """Train on ``n_train`` structures, test on ``n_test`` others; returns and prints the errors."""
    from amptorch.train import AtomsTrainer
    from amptorch.train.plots import errors

    t0 = time.perf_counter()
    images = make_cu_emt(n_train + n_test, seed=0)
    train, test = images[:n_train], images[n_train:]
    trainer = AtomsTrainer(demo_config(train, epochs, run_dir, quiet))
    trainer.train()
    pred = trainer.predict(test)
    from amptorch.data import labels

    class _Ref:  # the labels in the shape errors() reads
        def __init__(self, atoms):
            lab = labels(atoms, forces=True)
            self.numbers, self.energy, self.forces = atoms.numbers, lab["energy"], lab["forces"]

    err = errors(pred, [_Ref(a) for a in test])
    dt = time.perf_counter() - t0
    print(
        f"test set ({len(test)} structures): energy MAE {1000 * err['energy_mae']:.2f} meV/atom, "
        f"force MAE {err['forces_mae']:.4f} eV/Å  (total {dt:.0f} s; run dir {trainer.run_dir})"
    )
    return err


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--test", type=int, default=60)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    run_demo(a.train, a.test, a.epochs, a.run_dir, a.quiet)


if __name__ == "__main__":
    main()
