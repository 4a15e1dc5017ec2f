"""Score the saved mlearn configs on mlearn's official test split.

    git clone https://github.com/materialsvirtuallab/mlearn /path/to/mlearn      # its data/{El}/test.json
    python benchmarks/mlearn_official.py --mlearn /path/to/mlearn --elements Mo

For each element, ``examples/mlearn/{El}.yaml`` is trained as written (on the whole
``../shared/data/mlearn/{El}_train.extxyz``, as ``amptorch train`` does) and scored on ``data/{El}/test.json``
(pymatgen structure dicts with ``outputs.energy`` in eV and ``outputs.forces`` in eV/Å, read without pymatgen).
Prints energy MAE (meV/atom) and force MAE (eV/Å) of the checkpoint's predict (for an ensemble config the
members' mean) and, for an ensemble, of member 0 alone. The official split is for reporting only: settings are chosen on
``benchmarks/mlearn.py``'s validation split.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def read_test(path: Path) -> list:
    """mlearn's ``test.json`` as ase.Atoms with single-point energies (eV) and forces (eV/Å)."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for entry in json.loads(path.read_text()):
        st = entry["structure"]
        symbols = [site["species"][0]["element"] for site in st["sites"]]
        positions = [site["xyz"] for site in st["sites"]]
        atoms = Atoms(symbols, positions=positions, cell=st["lattice"]["matrix"], pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=float(entry["outputs"]["energy"]),
                                           forces=np.asarray(entry["outputs"]["forces"], dtype=float))  # fmt: skip
        frames.append(atoms)
    return frames


def score(element: str, mlearn: Path, run_dir: Path) -> str:
    from mlearn import TARGETS  # (benchmarks/mlearn.py; imported on use, so read_test imports nothing of ours)

    from amptorch.cli import load_yaml
    from amptorch.potential import TrainedPotential, errors
    from amptorch.train import AtomsTrainer

    cfg = load_yaml(REPO / "examples" / "mlearn" / f"{element}.yaml")
    cfg["dataset"]["raw_data"] = str((REPO / cfg["dataset"]["raw_data"]).resolve())
    cfg["cmd"].update(run_dir=str(run_dir / element), verbose=False)
    test = read_test(mlearn / "data" / element / "test.json")
    t0 = time.perf_counter()
    trainer = AtomsTrainer(cfg)
    trainer.train()
    err = errors(trainer.predict(test), test)
    members = trainer.config.uq.ensemble
    what = f"the mean of {members} members" if members > 1 else "predict"
    line = (f"{element}: {len(test)} test frames; {what} {1000 * err['energy_mae']:.2f} meV/atom, "
            f"{err['forces_mae']:.4f} eV/Å")  # fmt: skip
    if members > 1:  # member 0 alone: model.pt's network without the ensemble
        pot = trainer.potential
        alone = errors(TrainedPotential(pot.descriptor, pot.model, pot.network).predict(test), test)
        line += f"; member 0 alone {1000 * alone['energy_mae']:.2f} meV/atom, {alone['forces_mae']:.4f} eV/Å"
    e_bar, f_bar = TARGETS[element]
    return line + f" (to beat {e_bar:g} / {f_bar:g}; {time.perf_counter() - t0:.0f} s)"


def main(argv: list[str] | None = None) -> None:
    from mlearn import ELEMENTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mlearn", type=Path, required=True, help="a clone of materialsvirtuallab/mlearn")
    p.add_argument("--elements", nargs="+", choices=ELEMENTS, default=list(ELEMENTS))
    p.add_argument("--run-dir", type=Path, default=Path("runs") / "mlearn_official", help="where the runs go")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    for element in args.elements:
        print(score(element, args.mlearn, args.run_dir), flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
