"""An isolated molecule with a Behler-Parrinello network on Gaussian symmetry functions.

    python examples/molecule.py                    # water; a few minutes on a laptop
    python examples/molecule.py --molecule NH3     # any ase.build.molecule name made of H, C, N, O
    python examples/molecule.py --quick            # well under a minute (what CI runs)

1. Data: the molecule (no cell, pbc = F, F, F), relaxed with ASE's EMT, then
   sampled by Langevin MD with EMT at 300, 600 and 1000 K. EMT's parameters
   for H, C, N and O are a toy (EMT has no angular terms, so bending modes
   are nearly free: in CH4 or CH3OH a relaxation wanders along them, which
   makes those poor benchmarks); it stands in for DFT here because it ships
   with ASE.
2. Training: a BPNN (one network per element) on G2 + G4 symmetry
   functions, given in the original AmpTorch's ``Gs`` form
   (``fp_scheme: "gaussian"``; etas in units of 1/cutoff^2).
3. Checks: BFGS relaxation from a rattled geometry with the trained
   calculator and with EMT; then harmonic frequencies
   (``ase.vibrations.Vibrations``) at both minima.

Prints test errors (energy MAE meV/atom, force MAE eV/Å), the relaxation
(steps, energies, the EMT energy at the model's minimum above EMT's own, the
RMSD of interatomic distances) and both frequency lists with the MAE of the
stretching modes (those EMT puts above 1000 cm^-1). Writes the run
directory, trajectories, vibration caches and ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MODES = {  # quick: CI; full: a few minutes on a laptop
    "quick": {"n_train": 100, "n_test": 25, "epochs": 150},
    "full": {"n_train": 400, "n_test": 100, "epochs": 300},
}

# The original AmpTorch's Gaussian symmetry-function parameters (its README):
# G2 etas and G4 etas are in units of 1/cutoff^2; "gammas" are the lambdas of G4.
GS = {
    "default": {
        "G2": {"etas": np.logspace(np.log10(0.05), np.log10(5.0), num=4).tolist(), "rs_s": [0.0]},
        "G4": {"etas": [0.005], "zetas": [1.0, 4.0], "gammas": [1.0, -1.0]},
        "cutoff": 6.0,
    },
}


def reference(name: str):
    """The molecule relaxed with EMT (isolated: no cell, no periodicity)."""
    from ase.build import molecule
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS

    atoms = molecule(name)
    bad = sorted(set(atoms.get_chemical_symbols()) - {"H", "C", "N", "O"})
    if bad:
        raise SystemExit(f"--molecule {name}: EMT has no parameters for {bad}; expected a molecule of H, C, N, O")
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=1e-4, steps=1000)
    atoms.calc = None
    return atoms


def make_data(ref, n: int, seed: int, temperatures=(300.0, 600.0, 1000.0), interval: int = 10) -> list:
    """``n`` EMT-labelled frames from Langevin MD of ``ref`` at each temperature in turn (energy eV, forces eV/Å).

    MD, not a rattle around the minimum: it also samples the floppy directions
    (EMT has nearly free bending modes) that a relaxation wanders along.
    """
    from ase import units
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin

    rng = np.random.default_rng(seed)
    frames: list = []
    per_t = -(-n // len(temperatures))
    for temperature in temperatures:
        atoms = ref.copy()
        atoms.calc = EMT()
        thermalize(atoms, temperature, rng)
        dyn = Langevin(atoms, timestep=1.0 * units.fs, temperature_K=temperature, friction=0.05 / units.fs,
                       fixcm=False, rng=rng)  # fmt: skip
        dyn.run(5 * interval)  # leave the minimum
        for _ in range(per_t):
            dyn.run(interval)
            frame = atoms.copy()
            frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
            frames.append(frame)
    order = rng.permutation(len(frames))[:n]  # mix temperatures before the train / test split
    return [frames[k] for k in order]


def thermalize(atoms, temperature: float, rng) -> None:
    """Maxwell-Boltzmann momenta at ``temperature`` K (ase >= 3.29 renamed the function)."""
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ase < 3.29
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)


def config(images, epochs: int, run_dir: str, workers: int, verbose: bool) -> dict:
    """The original AmpTorch's config dict (model / optim / dataset / cmd)."""
    return {
        "model": {"name": "bpnn", "get_forces": True, "num_layers": 2, "num_nodes": 20, "activation": "tanh"},
        "optim": {
            "force_coefficient": 0.3,
            "lr": 1e-2,
            "batch_size": 16,
            "epochs": epochs,
            "cp_metric": "forces",
            "scheduler": {"policy": "CosineAnnealingLR", "params": {"T_max": epochs, "eta_min": 1e-4}},
        },
        "dataset": {
            "raw_data": images,
            "val_split": 0.1,
            "fp_scheme": "gaussian",
            "fp_params": GS,
            "cutoff_params": {"cutoff_func": "cosine"},
            "save_fps": False,
            "scaling": {"type": "standardize", "elementwise": True},  # per-element feature statistics
            "workers": workers,
        },
        "cmd": {"run_dir": run_dir, "identifier": "molecule", "seed": 1, "verbose": verbose},
    }


def relax_and_vibrate(atoms, calc, fmax: float, out: Path, tag: str) -> dict:
    """BFGS to ``fmax`` eV/Å, then harmonic frequencies (cm^-1) at the minimum."""
    from ase.optimize import BFGS
    from ase.vibrations import Vibrations

    atoms.calc = calc
    opt = BFGS(atoms, logfile=None, trajectory=str(out / f"relax_{tag}.traj"))
    converged = bool(opt.run(fmax=fmax, steps=500))
    energy = float(atoms.get_potential_energy())
    vib = Vibrations(atoms, name=str(out / f"vib_{tag}"))
    vib.clean()  # a cache left by an earlier run holds another model's forces
    vib.run()
    freqs = np.real(vib.get_frequencies())  # imaginary modes come back as complex; keep the real part
    n_internal = 3 * len(atoms) - (5 if _linear(atoms) else 6)
    return {"atoms": atoms, "energy": energy, "steps": int(opt.nsteps), "converged": converged,
            "frequencies": np.sort(freqs)[-n_internal:].tolist()}  # fmt: skip


def _linear(atoms) -> bool:
    if len(atoms) < 3:
        return True
    x = atoms.positions - atoms.positions.mean(0)
    return bool(np.linalg.svd(x, compute_uv=False)[1] < 1e-3)


def distances(atoms) -> np.ndarray:
    """Sorted interatomic distances: compares geometries without aligning them."""
    d = atoms.get_all_distances()
    return np.sort(d[np.triu_indices(len(atoms), 1)])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small data and short training (CI)")
    p.add_argument("--molecule", default="H2O", help="an ase.build.molecule name of H, C, N, O atoms (default H2O)")
    p.add_argument("--out", default="runs/molecule", help="output directory (default runs/molecule)")
    p.add_argument("--fmax", type=float, default=0.01, help="relaxation threshold, eV/Å (default 0.01)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and fingerprint threads (default 1: small networks gain little from more, and "
                        "oversubscribed cores slow them down a lot)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="print the per-epoch table")
    args = p.parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]

    import torch
    from ase.calculators.emt import EMT

    from amptorch import AtomsTrainer
    from amptorch.potential import errors

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        ref = reference(args.molecule)
        images = make_data(ref, mode["n_train"] + mode["n_test"], args.seed)
        train, test = images[: mode["n_train"]], images[mode["n_train"] :]
        print(f"data: {len(train)} training and {len(test)} test frames of {args.molecule} labelled by EMT, "
              f"pbc {ref.pbc.tolist()} ({time.perf_counter() - t0:.1f} s)")  # fmt: skip

        t1 = time.perf_counter()
        trainer = AtomsTrainer(config(train, mode["epochs"], str(out), args.threads, args.verbose))
        trainer.train()
        t_train = time.perf_counter() - t1
        err = errors(trainer.predict(test), test)
        print(f"training: {mode['epochs']} epochs in {t_train:.1f} s; checkpoint {trainer.run_dir}")
        print(f"test set: energy MAE {1000 * err['energy_mae']:.2f} meV/atom, force MAE {err['forces_mae']:.4f} eV/Å")

        start = ref.copy()
        start.rattle(0.05, seed=args.seed + 1)
        res = {}
        for tag, calc in (("model", trainer.get_calc()), ("emt", EMT())):
            res[tag] = relax_and_vibrate(start.copy(), calc, args.fmax, out, tag)
        m, e = res["model"], res["emt"]
        check = m["atoms"].copy()
        check.calc = EMT()
        emt_excess = float(check.get_potential_energy() - e["energy"])
        dist_rmsd = float(np.sqrt(np.mean((distances(m["atoms"]) - distances(e["atoms"])) ** 2)))
        f_m, f_e = np.array(m["frequencies"]), np.array(e["frequencies"])
        stretch = f_e > 1000.0
        stretch_mae = float(np.mean(np.abs(f_m[stretch] - f_e[stretch]))) if stretch.any() else float("nan")
        print(f"BFGS from a rattled geometry (fmax {args.fmax} eV/Å): model {m['steps']} steps "
              f"(converged {m['converged']}), EMT {e['steps']} steps")  # fmt: skip
        print(
            f"  energy at the minimum: model {m['energy']:.4f} eV, EMT {e['energy']:.4f} eV; EMT at the model's "
            f"minimum is {1000 * emt_excess:.2f} meV above EMT's; interatomic-distance RMSD {dist_rmsd:.4f} Å"
        )
        print(f"  frequencies (cm^-1), model: {np.round(f_m).astype(int).tolist()}")
        print(f"  frequencies (cm^-1), EMT:   {np.round(f_e).astype(int).tolist()}")
        print(f"  stretching modes (EMT > 1000 cm^-1): MAE {stretch_mae:.0f} cm^-1")
        results = {
            "mode": "quick" if args.quick else "full",
            "molecule": args.molecule,
            "run_dir": str(trainer.run_dir),
            "train_seconds": t_train,
            "test": err,
            "relax": {k: {kk: vv for kk, vv in v.items() if kk != "atoms"} for k, v in res.items()},
            "emt_excess": emt_excess,
            "distance_rmsd": dist_rmsd,
            "stretch_mae": stretch_mae,
            "total_seconds": time.perf_counter() - t0,
        }
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"total {results['total_seconds']:.0f} s; results in {out / 'results.json'}")
        return results
    finally:
        torch.set_num_threads(threads_before)


if __name__ == "__main__":
    main()
