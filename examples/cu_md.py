"""Copper MD with a trained potential, checked against the EMT it learned from.

    python examples/cu_md.py              # a few minutes on a laptop
    python examples/cu_md.py --quick      # well under a minute (what CI runs)

1. Data: rattled and strained fcc Cu cells (32 and 108 atoms; 32 only with
   --quick; some with a vacancy) labelled with ASE's EMT calculator, made
   here (nothing is downloaded); a test split is held out.
2. Training: a SingleNN (one network for every atom) on GMP fingerprints,
   fitted to energies and forces with the original AmpTorch config dict.
3. MD: NVT Langevin on a 108-atom Cu cell driven by the trained model through
   ``AmpTorchCalculator`` (loaded from the checkpoint directory, as a user
   would in a new session). Every few steps the frame is re-evaluated with
   EMT: energy and force errors along the trajectory.
4. NVE: the thermalized cell continues with velocity Verlet; the drift of
   the total energy shows whether the model's forces are the gradient of its
   energy and smooth enough for a 2 fs step.

Prints test-set errors (energy MAE meV/atom, force MAE eV/Å), errors along
the MD trajectory, and the NVE energy drift (meV/atom/ps); writes the run
directory, ``nvt.traj``, ``nve.traj`` and ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MODES = {  # quick: CI; full: a few minutes on a laptop
    "quick": {
        "n_train": 50,
        "n_test": 10,
        "big_every": 0,
        "epochs": 120,
        "nvt_steps": 60,
        "nve_steps": 50,
        "interval": 10,
    },
    "full": {
        "n_train": 240,
        "n_test": 60,
        "big_every": 3,
        "epochs": 250,
        "nvt_steps": 1000,
        "nve_steps": 500,
        "interval": 20,
    },
}


def make_data(n: int, seed: int, big_every: int = 3) -> list:
    """``n`` EMT-labelled fcc Cu cells: rattled, strained by up to 2 %, one in five with a vacancy.

    Cells are 2x2x2 conventional cells (32 atoms), every ``big_every``-th one
    3x3x3 (108 atoms; 0: none). Energies (eV), forces (eV/Å) and stress
    (eV/Å^3) are stored on a SinglePointCalculator, as ``ase.io.read`` gives them.
    """
    from amptorch.demo import make_cu_emt

    return make_cu_emt(n, seed, big_every=big_every)


def config(images, epochs: int, run_dir: str, workers: int, verbose: bool) -> dict:
    """The original AmpTorch's config dict (model / optim / dataset / cmd)."""
    return {
        "model": {
            "name": "singlenn",  # one network for all atoms: element identity comes from GMP densities
            "get_forces": True,
            "num_layers": 2,
            "num_nodes": 32,
            "activation": "tanh",
        },
        "optim": {
            "force_coefficient": 0.3,  # loss = energy MSE (per atom) + 0.3 x force MSE
            "lr": 1e-2,
            "batch_size": 16,
            "epochs": epochs,
            "loss": "mse",
            "cp_metric": "forces",  # keep the weights with the best validation force error
            "scheduler": {"policy": "CosineAnnealingLR", "params": {"T_max": epochs, "eta_min": 2e-4}},
        },
        "dataset": {
            "raw_data": images,
            "val_split": 0.1,
            "fp_scheme": "gmpordernorm",
            "fp_params": {
                "MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.4, 0.8, 1.2, 1.6, 2.0]},
                "cutoff": 7.0,  # Å; the default would follow the widest sigma (about 12 Å here)
                "smooth_cutoff": "cosine",  # continuous energy at 7 Å, so NVE conserves energy
            },
            "save_fps": False,
            "scaling": {"type": "standardize", "elementwise": False},
            "workers": workers,
        },
        "cmd": {"run_dir": run_dir, "identifier": "cu_md", "seed": 1, "verbose": verbose, "dtype": "float64"},
    }


def thermalize(atoms, temperature: float, rng) -> None:
    """Maxwell-Boltzmann momenta at ``temperature`` K (ase >= 3.29 renamed the function)."""
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ase < 3.29
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)


def run_md(calc, steps: int, interval: int, temperature: float, timestep: float, traj_path: Path, seed: int,
           ensemble: str = "nvt", atoms=None) -> dict:  # fmt: skip
    """MD on Cu108 with ``calc``; every ``interval`` steps the frame is also evaluated with EMT."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.constraints import FixCom
    from ase.io.trajectory import Trajectory
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    rng = np.random.default_rng(seed)
    if atoms is None:
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))  # 108 atoms
        atoms.set_constraint(FixCom())  # no drift of the centre of mass
        thermalize(atoms, temperature, rng)
    atoms.calc = calc
    if ensemble == "nvt":
        dyn = Langevin(atoms, timestep=timestep * units.fs, temperature_K=temperature, friction=0.02 / units.fs,
                       fixcm=False, rng=rng)  # fmt: skip
    else:
        dyn = VelocityVerlet(atoms, timestep=timestep * units.fs)
    emt = EMT()
    log: dict[str, list] = {"time_fs": [], "epot": [], "epot_emt": [], "etot": [], "temperature": [], "df": []}

    def check() -> None:
        ref = atoms.copy()
        ref.calc = emt
        log["time_fs"].append(dyn.nsteps * timestep)
        log["epot"].append(atoms.get_potential_energy())
        log["epot_emt"].append(ref.get_potential_energy())
        log["etot"].append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
        log["temperature"].append(atoms.get_temperature())
        log["df"].append(np.abs(atoms.get_forces() - ref.get_forces()).ravel())

    traj = Trajectory(str(traj_path), "w", atoms)
    dyn.attach(traj.write, interval=interval)
    dyn.attach(check, interval=interval)
    t0 = time.perf_counter()
    dyn.run(steps)
    wall = time.perf_counter() - t0
    traj.close()
    n = len(atoms)
    epot, epot_emt = np.array(log["epot"]), np.array(log["epot_emt"])
    t_ps = np.array(log["time_fs"]) / 1000.0
    etot = np.array(log["etot"]) / n
    slope = float(np.polyfit(t_ps, etot, 1)[0]) if len(t_ps) > 2 and t_ps[-1] > 0 else float("nan")
    return {
        "atoms": atoms,
        "steps": steps,
        "steps_per_s": steps / wall,  # with the EMT checks and trajectory writes
        "frames_checked": len(epot),
        "energy_mae": float(np.mean(np.abs(epot - epot_emt)) / n),
        # the mean signed error: a constant shift of the energy does not change the dynamics
        "energy_offset": float(np.mean(epot - epot_emt) / n),
        "forces_mae": float(np.mean(np.concatenate(log["df"]))),
        "temperature_mean": float(np.mean(log["temperature"])),
        "etot_drift": slope,  # eV/atom/ps, linear fit of total energy vs time
        "etot_spread": float(etot.max() - etot.min()),  # eV/atom
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small data, short training and MD (CI)")
    p.add_argument("--out", default="runs/cu_md", help="output directory (default runs/cu_md)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--timestep", type=float, default=2.0, help="fs (default 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and fingerprint threads (default 1: small networks gain little from more, and "
                        "oversubscribed cores slow them down a lot)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="print the per-epoch table")
    args = p.parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]

    import torch

    from amptorch import AmpTorchCalculator, AtomsTrainer
    from amptorch.potential import errors

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        images = make_data(mode["n_train"] + mode["n_test"], args.seed, mode["big_every"])
        train, test = images[: mode["n_train"]], images[mode["n_train"] :]
        print(f"data: {len(train)} training and {len(test)} test Cu cells labelled by EMT "
              f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip

        t1 = time.perf_counter()
        trainer = AtomsTrainer(config(train, mode["epochs"], str(out), args.threads, args.verbose))
        trainer.train()
        t_train = time.perf_counter() - t1
        err = errors(trainer.predict(test), test)
        print(f"training: {mode['epochs']} epochs in {t_train:.1f} s; checkpoint {trainer.run_dir}")
        print(f"test set: energy MAE {1000 * err['energy_mae']:.2f} meV/atom, force MAE {err['forces_mae']:.4f} eV/Å")

        # a new calculator from the checkpoint directory, as in a later session
        calc = AmpTorchCalculator(trainer.run_dir, n_threads=args.threads)
        nvt = run_md(calc, mode["nvt_steps"], mode["interval"], args.temperature, args.timestep,
                     out / "nvt.traj", args.seed, "nvt")  # fmt: skip
        print(
            f"NVT Langevin, Cu108, {args.temperature:.0f} K, {mode['nvt_steps']} x {args.timestep:g} fs "
            f"({nvt['steps_per_s']:.0f} steps/s with the EMT checks): <T> = {nvt['temperature_mean']:.0f} K; vs EMT on "
            f"{nvt['frames_checked']} frames: energy MAE {1000 * nvt['energy_mae']:.2f} meV/atom "
            f"(mean offset {1000 * nvt['energy_offset']:+.2f}), force MAE {nvt['forces_mae']:.4f} eV/Å"
        )
        nve = run_md(calc, mode["nve_steps"], max(1, mode["interval"] // 2), args.temperature, args.timestep,
                     out / "nve.traj", args.seed, "nve", atoms=nvt.pop("atoms"))  # fmt: skip
        nve.pop("atoms")
        print(
            f"NVE velocity Verlet, {mode['nve_steps']} x {args.timestep:g} fs: total-energy drift "
            f"{1000 * nve['etot_drift']:+.3f} meV/atom/ps, spread {1000 * nve['etot_spread']:.3f} meV/atom; "
            f"vs EMT: energy MAE {1000 * nve['energy_mae']:.2f} meV/atom, force MAE {nve['forces_mae']:.4f} eV/Å"
        )
        results = {
            "mode": "quick" if args.quick else "full",
            "run_dir": str(trainer.run_dir),
            "train_seconds": t_train,
            "test": err,
            "nvt": nvt,
            "nve": nve,
            "total_seconds": time.perf_counter() - t0,
        }
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"total {results['total_seconds']:.0f} s; results in {out / 'results.json'}")
        return results
    finally:
        torch.set_num_threads(threads_before)


if __name__ == "__main__":
    main()
