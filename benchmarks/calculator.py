"""Latency of the ASE calculator and MD speed, next to ASE's EMT on the same cells.

    flock /tmp/bench.lock python benchmarks/calculator.py            # the README's table
    flock /tmp/bench.lock python benchmarks/calculator.py --quick    # fewer repeats

Model: SingleNN 2x32 (tanh) on GMP orders 0-3 x sigmas 0.4, 0.8, 1.2, 1.6,
2.0 Å (20 features), cutoff 7 Å, float64 (and a float32 copy), built through
the normal path (AtomsTrainer on a few EMT-labelled Cu cells, 0 epochs:
untrained weights time the same as trained ones) and saved/loaded as a
checkpoint. Cells: fcc Cu 3x3x3 (108 atoms) and 6x6x6 (864 atoms), rattled
0.05 Å.

Rows: one energy+forces call and one energy+forces+stress call (median and
minimum of repeats; EMT always computes energy, forces and stress together),
with 1 thread (``n_threads=1`` and ``torch.set_num_threads(1)``) and 2
threads; MD steps per second (velocity Verlet, 1 fs); EMT on the same cell in
the same run, and the ratio. Each timed call moves one atom by 1e-6 Å, so
ASE recomputes and, on the fused path, the Verlet list (skin 0.5 Å) is
reused, as between MD steps; the "new list" column uses ``skin=0`` (vesin
runs every call, as after a large move). Models: float64, a float32 copy,
the float64 model on the training path (``fused=False``: derivative
blocks from ``descriptor.compute`` through the model's autograd path, the
calculator before the fused path existed), and the float64 model with a
5-member ensemble attached (what a ``uq.ensemble: 5`` checkpoint predicts:
the members' mean, M network passes and one backward of the mean energy).

Then where the time of one 1-thread fused call goes: vesin half list (only
when rebuilt), features pass (C++), torch forward + backward to
dE/dfeatures, force pass (C++), the rest (ASE bookkeeping, structure and
element checks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from amptorch.calculator import AmpTorchCalculator
from amptorch.demo import demo_config, make_cu_emt
from amptorch.descriptors.neighbors import VerletPairs
from amptorch.models import AtomisticModel, build_model
from amptorch.potential import TrainedPotential
from amptorch.train import AtomsTrainer


def build_potential(run_dir: str) -> TrainedPotential:
    """The benchmark model through AtomsTrainer (0 epochs), saved and loaded as a checkpoint."""
    cfg = demo_config(make_cu_emt(6, seed=0), epochs=0, run_dir=run_dir, quiet=True)
    cfg["dataset"]["val_split"] = 0.0
    cfg["cmd"]["identifier"] = "bench"
    trainer = AtomsTrainer(cfg).train()
    return TrainedPotential.load(trainer.run_dir)


def float32_copy(pot: TrainedPotential) -> TrainedPotential:
    net = build_model(pot.network["name"], pot.descriptor.length, **pot.network["options"])
    model = AtomisticModel(net).to(torch.float32)
    model.load_state_dict({k: v.float() for k, v in pot.model.state_dict().items()})
    return TrainedPotential(pot.descriptor, model.eval(), pot.network, meta=pot.meta)


def ensemble_copy(pot: TrainedPotential, members: int = 5) -> TrainedPotential:
    """``pot`` with an ensemble of ``members`` networks (``pot``'s and freshly initialized ones) attached, as a
    checkpoint trained with ``uq.ensemble`` holds it: the calculator then evaluates the members' mean."""
    from amptorch.uq.ensemble import Ensemble
    from amptorch.uq.state import UQState

    nets = [pot.model.network]
    for seed in range(1, members):
        torch.manual_seed(seed)
        nets.append(build_model(pot.network["name"], pot.descriptor.length, **pot.network["options"]).double())
    out = TrainedPotential(pot.descriptor, pot.model, pot.network, meta=pot.meta)
    state = UQState(out)
    state.ensemble = Ensemble(nets)
    out.uq = state
    return out


def cell(reps: int):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((reps, reps, reps))
    atoms.rattle(0.05, seed=1)
    return atoms


def latency(calc, atoms, stress: bool, repeats: int) -> tuple[float, float]:
    """(median, min) wall seconds of one energy+forces(+stress) evaluation through ASE.

    Each call moves one atom by 1e-6 Å (so ASE sees changed positions only, as
    in MD) and asks for forces, energy (and stress). The minimum is the figure
    least disturbed by other work on the machine.
    """
    a = atoms.copy()
    a.calc = calc
    wall = []
    for k in range(repeats + 2):
        a.positions[0, 0] += 1e-6 * (-1) ** k
        t0 = time.perf_counter()
        a.get_forces()
        a.get_potential_energy()
        if stress:
            a.get_stress()
        if k >= 2:  # warm-up calls dropped (the first stress request recomputes once)
            wall.append(time.perf_counter() - t0)
    return statistics.median(wall), min(wall)


def md_rate(calc, atoms, steps: int) -> float:
    """Velocity Verlet steps per second (1 fs, 300 K start)."""
    a = atoms.copy()
    a.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(a, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(a)
    dyn = VelocityVerlet(a, timestep=1.0 * units.fs)
    dyn.run(2)
    t0 = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - t0)


def breakdown(pot: TrainedPotential, atoms, repeats: int) -> dict[str, float]:
    """Minimum milliseconds of each stage of one 1-thread fused call (and of the whole call through ASE)."""
    clock = time.perf_counter
    calc = AmpTorchCalculator(pot, n_threads=1)
    inf = calc.inference
    a = atoms.copy()
    a.calc = calc
    numbers = torch.as_tensor(atoms.numbers, dtype=torch.long)
    fresh = VerletPairs(pot.descriptor.cutoff + inf.pairs.skin, skin=0.0)  # the same list, built every call
    stages: dict[str, list[float]] = {k: [] for k in ("vesin", "features", "torch", "forces", "total")}
    for k in range(repeats + 2):
        t0 = clock()
        fresh.update(atoms.positions, atoms.cell.array, atoms.pbc)
        t1 = clock()
        feats = inf.features(atoms, 1)
        t2 = clock()
        x = torch.from_numpy(feats).to(pot.dtype).requires_grad_(True)
        energies, _ = pot.model.atomic_energies(x, numbers)
        (g,) = torch.autograd.grad(energies.sum(), x)
        t3 = clock()
        inf.forces(g.double().numpy(), 1)
        t4 = clock()
        a.positions[0, 0] += 1e-6 * (-1) ** k
        a.get_forces()
        a.get_stress()
        t5 = clock()
        if k >= 2:
            for key, t in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                stages[key].append(t)
    return {k: 1000 * min(v) for k, v in stages.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and MD steps")
    p.add_argument("--sizes", type=int, nargs="+", default=[3, 6], help="fcc cubic repeats (3: 108, 6: 864 atoms)")
    args = p.parse_args()
    repeats = 5 if args.quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        pot64 = build_potential(tmp)
    pot32 = float32_copy(pot64)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# amptorch calculator vs ASE EMT  (torch {torch.__version__}, {os.cpu_count()} CPUs visible, "
          f"load average {load:.1f} at start)")  # fmt: skip
    print(f"# model: SingleNN 2x32 tanh, GMP {pot64.descriptor.length} features (orders 0-3 x 5 sigmas), "
          f"cutoff {pot64.descriptor.cutoff} Å")  # fmt: skip
    print("# ms: median / min wall-clock milliseconds of one call (min: least disturbed by other load)")
    print()
    print("| atoms | threads | model | E+F ms | E+F ms, new list | E+F+S ms | EMT ms | E+F / EMT (min) "
          "| MD steps/s | EMT MD steps/s |")  # fmt: skip
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    default_threads = torch.get_num_threads()
    models = (("float64", pot64, True), ("float32", pot32, True), ("float64, training path", pot64, False),
              ("float64, 5-member ensemble mean", ensemble_copy(pot64), True))
    for reps in args.sizes:
        atoms = cell(reps)
        n = len(atoms)
        md_steps = max(5, (100 if not args.quick else 20) * 108 // n)
        reps_n = max(5, repeats * 108 // n)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            t_emt = latency(EMT(), atoms, False, reps_n)
            md_emt = md_rate(EMT(), atoms, md_steps)
            for label, pot, fused in models:
                def calc(skin: float = 0.5, pot=pot, fused=fused, threads=threads):
                    return AmpTorchCalculator(pot, n_threads=threads, skin=skin, fused=fused)

                t_ef = latency(calc(), atoms, False, reps_n)
                t_new = latency(calc(skin=0.0), atoms, False, reps_n) if fused else None
                t_efs = latency(calc(), atoms, True, reps_n)
                md = md_rate(calc(), atoms, md_steps)
                cols = [f"{1000 * t[0]:.1f} / {1000 * t[1]:.1f}" if t else "–" for t in (t_ef, t_new, t_efs, t_emt)]
                print(f"| {n} | {threads} | {label} | " + " | ".join(cols) +
                      f" | {t_ef[1] / t_emt[1]:.2f} | {md:.1f} | {md_emt:.1f} |", flush=True)  # fmt: skip
    torch.set_num_threads(1)
    print()
    print("where one 1-thread energy+forces+stress call goes on the fused path (min ms, float64):")
    print()
    print("| atoms | vesin half list (when rebuilt) | features pass | torch fwd+bwd | force pass "
          "| rest (ASE, checks) | total, list reused |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for reps in args.sizes:
        atoms = cell(reps)
        parts = breakdown(pot64, atoms, max(5, repeats * 108 // len(atoms)))
        total = parts.pop("total")
        rest = total - sum(v for k, v in parts.items() if k != "vesin")
        print(f"| {len(atoms)} | " + " | ".join(f"{v:.2f}" for v in parts.values()) + f" | {rest:.2f} | {total:.2f} |")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
