"""Oxygen on Pt(111): train on EMT, relax the adsorbate with BFGS, compare with EMT.

    python examples/pt_slab_adsorbate.py            # a few minutes on a laptop
    python examples/pt_slab_adsorbate.py --quick    # well under a minute (what CI runs)

1. Data: a 3x3 Pt(111) slab, 3 layers, 7 Å of vacuum on each side, periodic
   in x and y only (pbc = T, T, F). Most frames hold one O atom placed at a
   random point above the surface (1.65-3.2 Å from the nearest Pt), the rest
   are the clean slab; all slab atoms are rattled. Labels from ASE's EMT.
2. Training: one SingleNN on GMP fingerprints for both elements. The network
   is shared; Pt and O differ only through their GMP pseudo-densities.
3. Relaxation: O starts 2 Å above the fcc, hcp, top and bridge sites (quick:
   fcc and top), the bottom Pt layer is fixed (``FixAtoms``) and BFGS relaxes
   with the trained calculator and, for reference, with EMT. The clean slab
   is relaxed the same way for the binding energy
   E_b = E(slab + O) - E(slab).

Prints test errors (energy MAE meV/atom, force MAE eV/Å) and, per site: BFGS
steps, O height above the surface, nearest O-Pt distance, E_b and the energy
relative to the first site (same composition, so no clean-slab reference
enters), the RMSD between the model's and EMT's relaxed geometries and the
EMT energy at the model's geometry minus the EMT minimum. Writes the run
directory, relaxation trajectories and ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MODES = {  # quick: CI; full: a few minutes on a laptop
    "quick": {"n_train": 70, "n_test": 14, "epochs": 120, "sites": ["fcc", "ontop"], "fmax": 0.05},
    "full": {"n_train": 320, "n_test": 60, "epochs": 300, "sites": ["fcc", "hcp", "ontop", "bridge"],
             "fmax": 0.02},
}  # fmt: skip

SIZE = (3, 3, 3)
VACUUM = 7.0  # Å on each side of the slab


def slab():
    """The clean Pt(111) slab with its bottom layer fixed; pbc = (True, True, False)."""
    from ase.build import fcc111
    from ase.constraints import FixAtoms

    atoms = fcc111("Pt", size=SIZE, vacuum=VACUUM)
    bottom = atoms.positions[:, 2] < atoms.positions[:, 2].min() + 0.5
    atoms.set_constraint(FixAtoms(mask=bottom))
    return atoms


def make_data(n: int, seed: int) -> list:
    """``n`` EMT-labelled frames: 1 in 6 the clean slab, the others with one O atom above it."""
    from ase import Atom
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = slab()
        atoms.set_constraint()
        ztop = atoms.positions[:, 2].max()
        cell = atoms.cell.array
        if k % 6:
            while True:  # a random point above the surface, neither inside a Pt atom nor far away
                u, v = rng.uniform(0.0, 1.0, 2)
                xy = u * cell[0, :2] + v * cell[1, :2]
                trial = atoms + Atom("O", (xy[0], xy[1], ztop + rng.uniform(1.0, 2.8)))
                d = trial.get_distances(len(atoms), range(len(atoms)), mic=True).min()
                if 1.65 < d < 3.2:
                    atoms = trial
                    break
        atoms.positions += rng.normal(0.0, rng.uniform(0.0, 0.05), atoms.positions.shape)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    return frames


def config(images, epochs: int, run_dir: str, workers: int, verbose: bool) -> dict:
    """The original AmpTorch's config dict (model / optim / dataset / cmd)."""
    return {
        "model": {"name": "singlenn", "get_forces": True, "num_layers": 2, "num_nodes": 32, "activation": "tanh"},
        "optim": {
            "force_coefficient": 0.3,
            "lr": 1e-2,
            "batch_size": 16,
            "epochs": epochs,
            "cp_metric": "forces",
            "scheduler": {"policy": "CosineAnnealingLR", "params": {"T_max": epochs, "eta_min": 2e-4}},
        },
        "dataset": {
            "raw_data": images,
            "val_split": 0.1,
            "fp_scheme": "gmpordernorm",
            "fp_params": {
                "MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.4, 0.8, 1.2, 1.6, 2.0]},
                "cutoff": 7.0,
                "smooth_cutoff": "cosine",  # continuous energy at the cutoff
            },
            "save_fps": False,
            "scaling": {"type": "standardize", "elementwise": False},
            "workers": workers,
        },
        "cmd": {"run_dir": run_dir, "identifier": "pt_o", "seed": 1, "verbose": verbose},
    }


def relax(atoms, calc, fmax: float, traj: Path, steps: int = 300) -> dict:
    """BFGS with ``calc``; returns the relaxed atoms, energy, steps and convergence."""
    from ase.optimize import BFGS

    atoms.calc = calc
    opt = BFGS(atoms, logfile=None, trajectory=str(traj))
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return {"atoms": atoms, "energy": float(atoms.get_potential_energy()), "steps": int(opt.nsteps),
            "converged": converged}  # fmt: skip


def geometry(atoms) -> dict:
    """O height above the top Pt layer (mean z) and the nearest O-Pt distance, Å."""
    pt = [a.index for a in atoms if a.symbol == "Pt"]
    z = atoms.positions[pt, 2]
    top = z > z.max() - 1.0
    o = len(atoms) - 1
    return {"height": float(atoms.positions[o, 2] - z[top].mean()),
            "d_pt_o": float(atoms.get_distances(o, pt, mic=True).min())}  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small data, short training, two sites (CI)")
    p.add_argument("--out", default="runs/pt_slab", help="output directory (default runs/pt_slab)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and fingerprint threads (default 1: small networks gain little from more, and "
                        "oversubscribed cores slow them down a lot)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="print the per-epoch table")
    args = p.parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]

    import torch
    from ase.build import add_adsorbate
    from ase.calculators.emt import EMT

    from amptorch import AtomsTrainer
    from amptorch.potential import errors

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        images = make_data(mode["n_train"] + mode["n_test"], args.seed)
        train, test = images[: mode["n_train"]], images[mode["n_train"] :]
        print(f"data: {len(train)} training and {len(test)} test Pt(111)(+O) frames labelled by EMT, "
              f"pbc {images[0].pbc.tolist()} ({time.perf_counter() - t0:.1f} s)")  # fmt: skip

        t1 = time.perf_counter()
        trainer = AtomsTrainer(config(train, mode["epochs"], str(out), args.threads, args.verbose))
        trainer.train()
        t_train = time.perf_counter() - t1
        err = errors(trainer.predict(test), test)
        print(f"training: {mode['epochs']} epochs in {t_train:.1f} s; checkpoint {trainer.run_dir}")
        print(f"test set: energy MAE {1000 * err['energy_mae']:.2f} meV/atom, force MAE {err['forces_mae']:.4f} eV/Å")

        calcs = {"model": trainer.get_calc(), "emt": EMT()}
        clean = {k: relax(slab(), c, mode["fmax"], out / f"relax_clean_{k}.traj") for k, c in calcs.items()}
        sites = {}
        for site in mode["sites"]:
            res = {}
            for k, c in calcs.items():
                atoms = slab()
                add_adsorbate(atoms, "O", 2.0, site)
                r = relax(atoms, c, mode["fmax"], out / f"relax_{site}_{k}.traj")
                r.update(geometry(r["atoms"]))
                r["binding_energy"] = r["energy"] - clean[k]["energy"]
                res[k] = r
            m, e = res["model"], res["emt"]
            check = m["atoms"].copy()
            check.calc = EMT()
            sites[site] = {
                "model": {k: v for k, v in m.items() if k != "atoms"},
                "emt": {k: v for k, v in e.items() if k != "atoms"},
                "rmsd": float(np.sqrt(((m["atoms"].positions - e["atoms"].positions) ** 2).sum(1).mean())),
                "emt_excess": float(check.get_potential_energy() - e["energy"]),
            }
        first = mode["sites"][0]
        for row in sites.values():  # site energies relative to the first site: same composition, no slab reference
            for k in ("model", "emt"):
                row[k]["relative_energy"] = row[k]["energy"] - sites[first][k]["energy"]
        print(f"BFGS relaxations (fmax {mode['fmax']} eV/Å, bottom layer fixed); E_b = E(slab+O) - E(slab):")
        print(f"{'site':<7}{'':<6}{'steps':>6}{'height Å':>10}{'d(O-Pt) Å':>11}{'E_b eV':>9}"
              f"{f'E-E({first}) eV':>13}{'RMSD Å':>9}{'EMT at model geom - EMT min, eV':>33}")  # fmt: skip
        for site, row in sites.items():
            for k in ("model", "emt"):
                r = row[k]
                extra = f"{row['rmsd']:>9.3f}{row['emt_excess']:>33.3f}" if k == "model" else ""
                name = site if k == "model" else ""
                print(f"{name:<7}{k:<6}{r['steps']:>6}{r['height']:>10.3f}{r['d_pt_o']:>11.3f}"
                      f"{r['binding_energy']:>9.3f}{r['relative_energy']:>13.3f}{extra}")  # fmt: skip
        results = {
            "mode": "quick" if args.quick else "full",
            "run_dir": str(trainer.run_dir),
            "train_seconds": t_train,
            "test": err,
            "clean": {k: {kk: vv for kk, vv in v.items() if kk != "atoms"} for k, v in clean.items()},
            "sites": sites,
            "total_seconds": time.perf_counter() - t0,
        }
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"total {results['total_seconds']:.0f} s; results in {out / 'results.json'}")
        return results
    finally:
        torch.set_num_threads(threads_before)


if __name__ == "__main__":
    main()
