"""The README's main job: generate EMT-labelled Cu, train a small potential, print test errors.

    amptorch demo            (or: python -m amptorch.demo)

Data: rattled and strained fcc Cu cells (32 and 108 atoms, some with a
vacancy) labelled with ASE's EMT calculator, generated on the spot by
``amptorch.testing.make_cu_emt`` so nothing is downloaded. Model: SingleNN
on GMP fingerprints (7 Å cutoff, smoothed), trained on energies and forces;
the test split is never seen in training.
"""

from __future__ import annotations

import argparse
import time

from amptorch.testing import label_emt as label_emt  # re-exported: the generator lives in the test kit
from amptorch.testing import make_cu_emt


def demo_config(images, epochs: int = 150, run_dir: str = "runs/demo", quiet: bool = False) -> dict:
    """An original-style AmpTorch config for the demo."""
    return {
        "model": {"name": "singlenn", "get_forces": True, "num_layers": 2, "num_nodes": 32, "activation": "tanh"},
        "optim": {"force_coefficient": 0.1, "lr": 5e-3, "batch_size": 16, "epochs": epochs, "loss": "mse",
                  "scheduler": {"policy": "CosineAnnealingLR", "params": {"T_max": epochs, "eta_min": 2e-4}}},
        "dataset": {"raw_data": images, "val_split": 0.1, "fp_scheme": "gmpordernorm",
                    "fp_params": {"MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.4, 0.8, 1.2, 1.6, 2.0]},
                                  "cutoff": 7.0, "smooth_cutoff": "cosine"},
                    "save_fps": False, "scaling": {"type": "standardize", "elementwise": False}},
        "cmd": {"debug": False, "run_dir": run_dir, "seed": 1, "identifier": "demo", "verbose": not quiet,
                "dtype": "float64"},
    }  # fmt: skip


def run_demo(n_train: int = 200, n_test: int = 60, epochs: int = 150, run_dir: str = "runs/demo",
             quiet: bool = False) -> dict:  # fmt: skip
    """Train on ``n_train`` structures, test on ``n_test`` others; returns and prints the errors."""
    from amptorch.potential import errors
    from amptorch.train import AtomsTrainer

    t0 = time.perf_counter()
    images = make_cu_emt(n_train + n_test, seed=0)
    train, test = images[:n_train], images[n_train:]
    trainer = AtomsTrainer(demo_config(train, epochs, run_dir, quiet))
    trainer.train()
    err = errors(trainer.predict(test), test)
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
