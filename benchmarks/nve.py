"""Energy conservation in NVE with a short GMP cutoff: the original's hard cutoff against a smooth one.

A new user's run: a small SingleNN (2x32 tanh) trained on EMT-labelled,
rattled Cu cells with GMP orders 0-3 x sigmas 0.4-1.4 Å at a 6 Å cutoff,
once with the original's hard cutoff (GMP warns: the widest probe is cut at
1e-4 of its peak) and once with ``smooth_cutoff: cosine``; then 1 ps of NVE
(velocities drawn at 2 x 300 K) on 108 atoms through the calculator, with
1 fs and 0.5 fs steps. Prints the largest |E_total(t) - E_total(0)| per atom.
Velocity Verlet's own error falls as dt^2; the energy jumps of a hard cutoff
do not, so halving the step separates the two.

    python benchmarks/nve.py            # ~2 min on 2 cores
    python benchmarks/nve.py --quick    # fewer epochs and steps: a smoke run
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

from amptorch.calculator import AmpTorchCalculator
from amptorch.testing import fcc_bulk, make_cu_emt, nve_drift
from amptorch.train import AtomsTrainer


def train(images, smooth: str | None, epochs: int, run_dir: str) -> AtomsTrainer:
    fp = {"MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.4, 0.7, 1.0, 1.4]}, "cutoff": 6.0}
    if smooth:
        fp["smooth_cutoff"] = smooth
    config = {
        "model": {"name": "singlenn", "num_layers": 2, "num_nodes": 32},
        "optim": {"force_coefficient": 0.1, "lr": 5e-3, "batch_size": 16, "epochs": epochs},
        "dataset": {"raw_data": images, "fp_params": fp, "save_fps": False},
        "cmd": {"run_dir": run_dir, "seed": 1, "verbose": False},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the hard-cutoff warning: the point of the comparison
        return AtomsTrainer(config).train()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    epochs, time_fs = (10, 200) if args.quick else (60, 1000)
    print(f"# load average at start: {os.getloadavg()[0]:.2f}")
    images = make_cu_emt(80, seed=0)
    start = fcc_bulk("Cu", 3.6, (3, 3, 3), rattle=0.05, seed=7)
    print(f"| cutoff (6 Å, sigmas to 1.4 Å) | train s | max drift over {time_fs} fs, meV/atom: 1 fs steps | 0.5 fs |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as run_dir:
        for smooth in (None, "cosine"):
            t0 = time.perf_counter()
            trainer = train(images, smooth, epochs, run_dir)
            dt = time.perf_counter() - t0
            calc = AmpTorchCalculator(trainer.potential, n_threads=1)
            drift = [nve_drift(calc, start, steps=int(time_fs / h), dt_fs=h) for h in (1.0, 0.5)]
            print(f"| {smooth or 'hard (the original)'} | {dt:.0f} | {1000 * drift[0]:.4f} | {1000 * drift[1]:.4f} |")


if __name__ == "__main__":
    main()
