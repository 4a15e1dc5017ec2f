"""Uncertainty benchmark: calibrated σ under a distribution shift, for every UQ method, next to the original's.

    python benchmarks/uq.py            # full run, about 10 min on 2 CPU cores
    python benchmarks/uq.py --quick    # smoke run, about 2 min
    python benchmarks/uq.py --reuse RUN_DIR   # evaluate an earlier run's checkpoints again (no training)

Data (generated here with ASE's EMT, Cu, as ``cu_emt`` of the shared data is made;
nothing is downloaded):

* pool: rattled + strained (±2 %) fcc cells (32-108 atoms, no vacancy) and
  Langevin MD frames of a 108-atom cell at 300 K and 600 K (400 + 240 frames;
  ``--quick``: 90 + 50 of 32-atom MD cells). The pool is split by seed into
  training (240 frames), calibration and an in-distribution test set ``same``
  (200 each): calibration and ``same`` are exchangeable, so split conformal
  calibration promises its coverage there and nowhere else.
* shifted test sets: ``hot`` (900/1200/1500 K MD, 80 frames each: the original's
  figures' test set), ``vacancy`` (600 K MD of cells with one or two vacancies), ``surface``
  (300-600 K MD of fcc(100)/(111) slabs, periodic in x and y).

Models (SingleNN on GMP, energies and forces, settings fixed before looking at
any test set): a plain model (also the latent-distance one), a 3-member
ensemble in one checkpoint, a model with dropout for MC dropout (T = 20). Each
method is calibrated (split conformal, 90 %) on the calibration set, then
reported per test set: observed coverage at 68/90/95 %, mean 90 % half-width
(eV/atom), miscalibration area, Spearman(σ, |error|), Gaussian NLL; and the
timing ratios latent / plain and dropout (T = 20) / plain.

The original's recipe is reproduced too: its ``ConformalPredictionLatentSpace``
(our adapter ``amptorch.uncertainty``) trained on the pool's training part and
given the hot set (it calibrates on 10 % of that set and tests on the rest),
and its 3-member ensemble at ±1.645 σ, against its figures measured on the same
kind of machine.

Torch's OpenMP threads spin while waiting; ``OMP_WAIT_POLICY=PASSIVE`` is set
below (before torch starts) unless the environment sets it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede importing torch

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

# the original's figures (tests/data/reference; cu_emt energies, trained on rattled/300 K/600 K, tested on 900-1500 K)
ORIGINAL = {
    "cp_latent": {"coverage_90": 0.935, "half_width_90": 0.0109, "spearman": 0.46},
    "ensemble_raw": {"coverage_90": 0.28},
    "ensemble_conformal": {"coverage_90": 0.894},
}
# GMP for Cu (the training benchmark's): orders 0-3 x 5 widths = 20 features, 6 Å covers EMT's Cu range
CU_GMP = {"MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.4, 0.8, 1.2, 1.6, 2.0]}, "cutoff": 6.0,
          "smooth_cutoff": "cosine"}  # fmt: skip


# -- data ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """Frame counts: the pool (rattles + MD frames per temperature), its training part (the rest is split
    evenly into calibration and ``same``), the hot set per temperature, vacancy and surface frames per kind."""

    rattles: int
    md_per_t: int
    n_train: int
    hot_per_t: int
    shifted_per_kind: int
    md_cell: tuple[int, int, int]


# full: the hot set as the original's (3 x 80 frames of 108 atoms); calibration and `same` large enough that
# an energy coverage is known to about ±3 % (one number per frame)
FULL = Sizes(rattles=400, md_per_t=120, n_train=240, hot_per_t=80, shifted_per_kind=40, md_cell=(3, 3, 3))
QUICK = Sizes(rattles=90, md_per_t=25, n_train=84, hot_per_t=12, shifted_per_kind=18, md_cell=(2, 2, 2))


def md_frames(atoms: Atoms, temperature: float, n: int, seed: int, every: int = 10) -> list[Atoms]:
    """``n`` EMT-labelled frames of Langevin MD (2 fs, friction 0.02) at ``temperature`` K, one every
    ``every`` steps after 50 steps of equilibration (as the shared ``cu_emt`` set)."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin

    from amptorch.testing import label_emt
    from amptorch.uq.active import thermalize

    atoms = atoms.copy()
    atoms.calc = EMT()
    thermalize(atoms, temperature, np.random.RandomState(seed))
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, fixcm=False,
                   rng=np.random.RandomState(seed + 1000))  # fmt: skip
    dyn.run(50)
    frames = []
    for _ in range(n):
        dyn.run(every)
        frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        frame.info["config_type"] = f"md_{temperature:.0f}K"
        frames.append(label_emt(frame))
    return frames


def rattled(n: int, seed: int) -> list[Atoms]:
    """``n`` rattled (0.02-0.15 Å) and strained (±2 %) fcc Cu cells of 32, 48, 72 or 108 atoms, no vacancy."""
    from amptorch.testing import fcc_bulk, label_emt

    rng = np.random.default_rng(seed)
    reps = [(2, 2, 2), (2, 2, 3), (2, 3, 3), (3, 3, 3)]
    frames = []
    for _ in range(n):
        strain = np.eye(3) + rng.normal(0, 0.02, (3, 3))
        atoms = fcc_bulk("Cu", 3.61, reps[int(rng.integers(len(reps)))], deform=strain, rattle=0.0)
        atoms.positions += rng.normal(0, rng.uniform(0.02, 0.15), atoms.positions.shape)
        atoms.info["config_type"] = "rattle"
        frames.append(label_emt(atoms))
    return frames


def make_sets(sizes: Sizes, seed: int = 0) -> dict[str, list[Atoms]]:
    """The benchmark's sets: ``train``, ``calib``, ``same`` (split from one pool) and the shifted
    ``hot``, ``vacancy``, ``surface``. Deterministic for a seed."""
    from ase.build import fcc100, fcc111

    from amptorch.testing import fcc_bulk

    bulk = fcc_bulk("Cu", 3.61, sizes.md_cell, rattle=0.0)
    pool = rattled(sizes.rattles, seed)
    for k, t in enumerate((300, 600)):
        pool += md_frames(bulk, t, sizes.md_per_t, seed + 10 + k)
    order = np.random.default_rng(seed).permutation(len(pool))
    n_calib = (len(pool) - sizes.n_train) // 2
    sets = {
        "train": [pool[i] for i in order[: sizes.n_train]],
        "calib": [pool[i] for i in order[sizes.n_train : sizes.n_train + n_calib]],
        "same": [pool[i] for i in order[sizes.n_train + n_calib :]],
    }
    sets["hot"] = [f for k, t in enumerate((900, 1200, 1500)) for f in md_frames(bulk, t, sizes.hot_per_t,
                                                                                   seed + 20 + k)]  # fmt: skip
    rng = np.random.default_rng(seed + 30)
    vacancy = []
    for k, n_vac in enumerate((1, 2)):
        cell = bulk.copy()
        del cell[sorted(rng.choice(len(cell), n_vac, replace=False).tolist(), reverse=True)]
        vacancy += md_frames(cell, 600, sizes.shifted_per_kind, seed + 40 + k)
    sets["vacancy"] = vacancy
    surface = []
    for k, (make, t) in enumerate(((fcc100, 300), (fcc111, 600))):
        slab = make("Cu", size=(3, 3, 4), a=3.61, vacuum=7.0)
        slab.pbc = (True, True, False)
        surface += md_frames(slab, t, sizes.shifted_per_kind, seed + 50 + k)
    sets["surface"] = surface
    return sets


# -- models -------------------------------------------------------------------------------------------------
METHODS = ("ensemble", "dropout", "latent")
MEMBERS = 3  # the original's figures used 3 members
DROPOUT_RATE = 0.1  # light: MC dropout's σ needs dropout, the model's accuracy does not want much of it
# the original's k; per-atom distances averaged per structure; 2000 stored training atoms (a uniform subsample:
# atoms of one frame are strongly correlated, so a few thousand cover a few hundred frames) and faiss's exact
# BLAS search (k-d trees lose their edge in 32 dimensions) keep the kNN query cheap next to a prediction
LATENT = {"k": 10, "aggregate": "mean", "max_atoms": 2000, "index": "faiss"}


def config(train: list[Atoms], run_dir: str, epochs: int, method: str) -> dict:
    """The demo's SingleNN 2x32 on GMP with energies and forces, plus what ``method`` needs. Fixed before
    any test set was looked at: the demo's settings, a cosine learning-rate schedule to a small final rate."""
    model = {"name": "singlenn", "get_forces": True, "num_layers": 2, "num_nodes": 32, "activation": "tanh"}
    uq: dict = {}
    if method == "ensemble":
        uq["ensemble"] = MEMBERS
    elif method == "dropout":
        model.update(dropout=True, dropout_rate=DROPOUT_RATE)
    else:
        uq["latent"] = dict(LATENT)
    return {
        "model": model,
        "optim": {"force_coefficient": 0.1, "lr": 5e-3, "batch_size": 16, "epochs": epochs, "loss": "mse",
                  "scheduler": {"policy": "CosineAnnealingLR", "params": {"T_max": epochs, "eta_min": 2e-4}}},
        "dataset": {"raw_data": train, "val_split": 0, "fp_scheme": "gmpordernorm", "fp_params": CU_GMP,
                    "save_fps": False, "scaling": {"type": "standardize", "elementwise": False}},
        "cmd": {"debug": False, "run_dir": run_dir, "seed": 1, "identifier": method, "verbose": False,
                "logger": False, "dtype": "float64"},
        "uq": uq,
    }  # fmt: skip


def train_all(train: list[Atoms], run_dir: str, epochs: int) -> dict[str, tuple[object, float]]:
    """{method: (TrainedPotential, training seconds)}: one plain model (the latent one), one ensemble
    checkpoint, one model with dropout."""
    from amptorch.train import AtomsTrainer

    out = {}
    for method in METHODS:
        t0 = time.perf_counter()
        trainer = AtomsTrainer(config(train, run_dir, epochs, method))
        trainer.train()
        out[method] = (trainer.potential, time.perf_counter() - t0)
        print(f"  trained {method}: {out[method][1]:.0f} s", flush=True)
    return out


def reuse(run_dir: str, train: list[Atoms]) -> dict[str, tuple[object, float]]:
    """The checkpoints a previous run left in ``run_dir`` (the latest of each method; the sets are seeded, so
    the training data are the same); latents refitted when ``LATENT`` changed since. Seconds are NaN."""
    from pathlib import Path

    from amptorch.data import featurize
    from amptorch.potential import TrainedPotential
    from amptorch.uq import LatentDistance

    out = {}
    for method in METHODS:
        found = sorted(Path(run_dir, "checkpoints").glob(f"*-{method}"))
        if not found:
            raise SystemExit(f"--reuse {run_dir}: no checkpoint of {method!r} there; run without --reuse first")
        pot = TrainedPotential.load(found[-1])
        out[method] = (pot, float("nan"))
    pot = out["latent"][0]
    settings = pot.uq.latent.settings() if pot.uq.latent is not None else {}
    if any(settings.get(k) != v for k, v in LATENT.items()):
        records = featurize(train, pot.descriptor, derivatives=False, progress=False)
        pot.uq.latent = LatentDistance(**LATENT, seed=1).fit(pot, records)
    return out


# -- evaluation ----------------------------------------------------------------------------------------------
def concat(preds: list[dict]) -> dict:
    """Predictions of several sets as one (lists joined, arrays concatenated)."""
    out: dict = {}
    for key in preds[0]:
        vals = [p[key] for p in preds]
        if isinstance(vals[0], np.ndarray):
            out[key] = np.concatenate(vals)
        elif isinstance(vals[0], list):
            out[key] = [v for p in vals for v in p]
        else:
            out[key] = vals[0]
    return out


def evaluate(potentials: dict, records: dict[str, list], coverage: float = 0.9) -> dict:
    """{method: {set: uq_report}} with each method calibrated (split conformal, normalized) on ``calib``;
    the set ``all`` pools the four test sets."""
    import torch

    from amptorch.uq import uq_report

    torch.manual_seed(0)  # MC dropout draws its masks from torch's stream: the same masks run after run
    tests = ("same", "hot", "vacancy", "surface")
    out: dict = {}
    for method, (pot, _) in potentials.items():
        state = pot.uq
        cal = state.calibrate(records["calib"], method, coverage=coverage)
        preds = {name: state.predict(records[name], method) for name in tests}
        preds["all"] = concat([preds[n] for n in tests])
        labels = {**{n: records[n] for n in tests}, "all": [r for n in tests for r in records[n]]}
        out[method] = {n: uq_report(p, labels[n]) for n, p in preds.items()}
        out[method]["scale"] = (cal.energy.quantile, cal.forces.quantile if cal.forces else np.nan)
        out[method]["preds"] = preds
    return out


def original_recipe(potentials: dict, sets: dict, records: dict, report: dict) -> dict:
    """The original's figures' recipe on our models: its ConformalPredictionLatentSpace (our adapter) trained
    on ``train`` and given the hot set (calibrated on 10 % of it, scored on the rest); the ensemble's raw
    ±1.645 σ on the hot set, and the same conformally scaled (on ``calib``)."""
    from scipy.stats import spearmanr

    from amptorch.uncertainty import ConformalPredictionLatentSpace

    pot = potentials["latent"][0]
    per_calib = max(0.1, 10 / len(sets["hot"]))  # the original's 10 %, or 10 frames on a --quick set
    res = ConformalPredictionLatentSpace(per_calib=per_calib).fit_predict(pot, sets["train"], sets["hot"])
    n = len(sets["hot"][0])  # every hot frame has the same size
    err, half = np.abs(res["residuals"]), res["uncertainty"]
    cp = {"coverage_90": float(np.mean(err <= half)), "half_width_90": float(np.mean(half) / n),
          "spearman": float(spearmanr(half, err).statistic)}  # fmt: skip
    hot = report["ensemble"]["preds"]["hot"]
    nat = np.array([r.n_atoms for r in records["hot"]], dtype=float)
    e_err = np.abs(np.asarray(hot["energy"]) - np.array([r.energy for r in records["hot"]])) / nat
    raw = {"coverage_90": float(np.mean(e_err <= 1.645 * np.asarray(hot["energy_std"]) / nat))}
    return {"cp_latent": cp, "ensemble_raw": raw,
            "ensemble_conformal": {"coverage_90": report["ensemble"]["hot"]["energy"]["coverage_90"]}}  # fmt: skip


def timings(potentials: dict, images: list[Atoms], records: list, repeat: int = 5) -> dict[str, float]:
    """Prediction times (s, best of ``repeat``) from structures (featurizing included, what a user calls) and
    from FeatureRecords (the model's share), plain and with σ. The calls are interleaved round by round, so a
    burst of load on the shared machine hits every variant alike, and torch and faiss run one thread each
    (a single thread is the least disturbed by other jobs; featurizing keeps its threads in every variant)."""
    import torch

    lat, drop, ens = potentials["latent"][0], potentials["dropout"][0], potentials["ensemble"][0]
    calls = {
        "plain": lambda: lat.predict(images),
        "latent": lambda: lat.uq.predict(images, "latent"),
        "dropout_plain": lambda: drop.predict(images),
        "dropout": lambda: drop.uq.predict(images, "dropout"),
        "ensemble": lambda: ens.uq.predict(images, "ensemble"),
        "plain_model": lambda: lat.evaluate_many(records),
        "latent_model": lambda: lat.uq.predict(records, "latent"),
        "dropout_plain_model": lambda: drop.evaluate_many(records),
        "dropout_model": lambda: drop.uq.predict(records, "dropout"),
        "dropout_plain_energy": lambda: drop.predict(images, forces=False),
        "dropout_energy": lambda: drop.uq.predict(images, "dropout", forces=False),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        faiss = None
    best = dict.fromkeys(calls, np.inf)
    try:
        for _ in range(repeat):
            for key, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                best[key] = min(best[key], time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
        if faiss is not None:
            faiss.omp_set_num_threads(threads)
    return best


# -- report ---------------------------------------------------------------------------------------------------
def table(report: dict, quantity: str) -> str:
    unit = "eV/atom" if quantity == "energy" else "eV/Å"
    cols = [("coverage_68", "cov 68", ".3f"), ("coverage_90", "cov 90", ".3f"), ("coverage_95", "cov 95", ".3f"),
            ("half_width_90", f"90 % half-width ({unit})", ".4f"), ("miscalibration_area", "miscal. area", ".3f"),
            ("spearman", "Spearman", ".2f"), ("nll", "NLL", ".2f")]  # fmt: skip
    lines = ["| method | test set | " + " | ".join(c[1] for c in cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for method in METHODS:
        for name in ("same", "hot", "vacancy", "surface", "all"):
            r = report[method][name][quantity]
            lines.append(f"| {method} | {name} | " + " | ".join(format(r[k], f) for k, _, f in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sets, fewer epochs (a smoke run)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    p.add_argument("--reuse", default=None, metavar="RUN_DIR",
                   help="evaluate the checkpoints an earlier run (same --quick) left in RUN_DIR, without training")
    a = p.parse_args(argv)
    from amptorch.data import featurize

    warnings.filterwarnings("ignore", category=FutureWarning)
    sizes = QUICK if a.quick else FULL
    epochs = a.epochs or (60 if a.quick else 120)
    out = a.reuse or a.out or tempfile.mkdtemp(prefix="amptorch-uq-")
    t0 = time.perf_counter()
    sets = make_sets(sizes)
    print("sets (frames / atoms): " + ", ".join(f"{k} {len(v)} / {sum(len(x) for x in v)}" for k, v in sets.items())
          + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    potentials = reuse(a.reuse, sets["train"]) if a.reuse else train_all(sets["train"], out, epochs)
    descriptor = potentials["latent"][0].descriptor
    assert all(pot.descriptor.hash == descriptor.hash for pot, _ in potentials.values())
    records = {k: featurize(v, descriptor, progress=False) for k, v in sets.items() if k != "train"}
    report = evaluate(potentials, records)
    recipe = original_recipe(potentials, sets, records, report)
    times = timings(potentials, sets["same"], records["same"])
    total = time.perf_counter() - t0

    print(f"\nenergy per atom (calibrated on `calib`, {len(sets['calib'])} frames, 90 % split conformal, normalized)\n")
    print(table(report, "energy"))
    print("\nforce components\n")
    print(table(report, "forces"))
    print("\nconformal quantile q (energy, forces): " + ", ".join(
        f"{m} {report[m]['scale'][0]:.3g} / {report[m]['scale'][1]:.3g}" for m in METHODS))  # fmt: skip
    print("\nthe original's recipe (train on rattles + 300/600 K, test on 900-1500 K MD), energies per atom\n")
    print("| estimator | ours: coverage at 90 % | ours: mean half-width (eV/atom) | ours: Spearman | original |")
    print("|---|---:|---:|---:|---|")
    cp, o = recipe["cp_latent"], ORIGINAL["cp_latent"]
    print(f"| ConformalPredictionLatentSpace (calibrated on 10 % of the hot set) | {cp['coverage_90']:.3f} | "
          f"{cp['half_width_90']:.4f} | {cp['spearman']:.2f} | {o['coverage_90']} / {o['half_width_90']} / "
          f"{o['spearman']} |")  # fmt: skip
    print(f"| 3-member ensemble, raw ±1.645 σ | {recipe['ensemble_raw']['coverage_90']:.3f} | | | "
          f"{ORIGINAL['ensemble_raw']['coverage_90']} |")  # fmt: skip
    print(f"| 3-member ensemble, conformally scaled | {recipe['ensemble_conformal']['coverage_90']:.3f} | | | "
          f"{ORIGINAL['ensemble_conformal']['coverage_90']} |")  # fmt: skip
    print(f"\ntimes on `same` ({len(sets['same'])} frames), best of 5, torch and faiss on one thread: "
          + ", ".join(f"{k} {v:.3f} s" for k, v in times.items()))  # fmt: skip
    extra = (times["latent_model"] - times["plain_model"]) / times["plain"]
    print(f"latent / plain: {times['latent'] / times['plain']:.3f} from structures; its extra work (latent "
          f"from features minus plain from features) is {100 * extra:.1f} % of a plain prediction from structures; "
          f"{times['latent_model'] / times['plain_model']:.2f} from features; MC dropout T = 20 / plain: "
          f"{times['dropout'] / times['dropout_plain']:.2f} from structures, "
          f"{times['dropout_model'] / times['dropout_plain_model']:.2f} from features, "
          f"{times['dropout_energy'] / times['dropout_plain_energy']:.2f} energies only; ensemble "
          f"({MEMBERS}) / plain: {times['ensemble'] / times['plain']:.2f}")  # fmt: skip
    train_s = ", ".join(f"{m} {s:.0f} s" for m, (_, s) in potentials.items())
    print(f"\ntraining: {train_s}; total {total:.0f} s; load {os.getloadavg()[0]:.2f}; run dir {out}")


if __name__ == "__main__":
    main()
