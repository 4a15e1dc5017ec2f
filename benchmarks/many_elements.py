"""One SingleNN-GMP model across 46 elements, next to a BPNN on Gaussian symmetry functions.

    python benchmarks/many_elements.py                     # full size: 300 epochs (about 30 min on 2 cores)
    python benchmarks/many_elements.py --epochs 40         # smoke run (minutes)

Data: ``../shared/data/many_element.extxyz`` (300 random alloys and rock-salt-type compounds of 46 elements,
CHGNet labels: energy, forces). For 10, 20 and 46 elements, the frames whose elements all lie in a greedy
element set of that size (grown frame by frame, most further frames covered per new element first) are split by seed
into 80 % training and 20 % test; both models train on energies and forces:

* SingleNN-GMP: one MLP for every element on GMP fingerprints (the widths and cutoff of
  ``amptorch.descriptors.defaults`` from the data's nearest-neighbour distance; MCSH orders ``--orders``).
  Its feature length is orders × widths, whatever the number of elements, so its parameter count is the same
  on 10, 20 and 46 elements.
* BPNN-G2/G4: one MLP per element on the original's Gaussian SF set (G2 per neighbour element, G4 per
  element pair): the feature length grows as E + E(E+1)/2 and the networks as E. Its stored derivative blocks
  (pairs × features × 3) are estimated from the first structures before featurizing; above ``--max-gb`` the
  G2/G4 model is not trained (the estimate is printed) and a BPNN on G2 alone stands in for it.

Columns: parameters, feature length, memory of the stored training fingerprints and derivatives (GB), seconds
per epoch (median), test energy MAE (meV/atom) and force MAE (eV/Å), train() wall and CPU seconds. Timings are
inflated on a shared machine: the load average is printed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/train.py; must precede importing torch

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from train import SHARED, config, fit, split, test_errors  # noqa: E402, I001

from amptorch.descriptors.defaults import gmp_fp_params, gsf_fp_params, nearest_neighbor_distance  # noqa: E402

Row = tuple[str, ...]
# MCSH orders 0-3 (24 features): the orders the docs/accuracy.md tables were measured with (the package default
# is now 0-4, tuned on mlearn; pass --orders 0 1 2 3 4 for it)
ORDERS = (0, 1, 2, 3)
HEAD = ("data", "model", "params", "features", "memory GB", "s/epoch", "E MAE meV/atom", "F MAE eV/Å",
        "train s (cpu s)")  # fmt: skip


def element_subset(frames: list, k: int, seed: int) -> list:
    """The frames whose elements lie in a greedy set of ``k`` elements: each step adds the elements of the frame
    that covers the most further frames per new element (ties: a seeded order), while the set holds at most
    ``k``."""
    sets = [frozenset(a.get_chemical_symbols()) for a in frames]
    order = np.random.default_rng(seed).permutation(len(frames))
    chosen: frozenset[str] = frozenset()

    def covered(elements: frozenset[str]) -> int:
        return sum(s <= elements for s in sets)

    while True:
        fits = [i for i in order if not sets[i] <= chosen and len(chosen | sets[i]) <= k]
        if not fits:
            break
        base = covered(chosen)
        best = max(fits, key=lambda i: (covered(chosen | sets[i]) - base) / len(sets[i] - chosen))
        chosen = chosen | sets[best]
    return [a for a, s in zip(frames, sets, strict=True) if s <= chosen]


def record_gb(records) -> float:
    """GB held by the arrays of feature records (features, derivative blocks, labels)."""
    return sum(v.nbytes for r in records for v in vars(r).values() if isinstance(v, np.ndarray)) / 1e9


def estimated_gb(frames: list, fp_scheme: str, fp_params: dict, elements: list[str], n: int = 3) -> float:
    """The stored training records' GB, extrapolated by atoms from featurizing the first ``n`` frames."""
    from amptorch.data import featurize
    from amptorch.descriptors import GMP, GaussianSF

    desc = (GMP.from_amptorch(fp_params) if fp_scheme == "gmpordernorm"
            else GaussianSF.from_amptorch(fp_params, elements))  # fmt: skip
    sample = frames[:n]
    per_atom = record_gb(featurize(sample, desc, progress=False)) / sum(len(a) for a in sample)
    return per_atom * sum(len(a) for a in frames)


def n_parameters(trainer) -> int:
    """Trainable parameters of the trained model (all element networks of a BPNN)."""
    return sum(p.numel() for p in trainer.potential.model.parameters() if p.requires_grad)


def model_row(data: str, label: str, cfg: dict, test: list) -> Row:
    """Train ``cfg`` and measure it on ``test``: one table row."""
    r = fit(cfg)
    trainer = r["trainer"]
    e, f = test_errors(trainer, test)
    train_records = trainer._splits[0]
    n_feat = train_records[0].n_features
    print(f"[{data}] {label}: {n_parameters(trainer)} parameters, {n_feat} features, test {e:.1f} meV/atom, "
          f"{f:.3f} eV/Å, {r['wall']:.0f} s", flush=True)  # fmt: skip
    return (data, label, str(n_parameters(trainer)), str(n_feat), f"{record_gb(train_records):.2f}",
            f"{r['epoch_s']:.2f}", f"{e:.1f}", f"{f:.3f}", f"{r['wall']:.0f} ({r['cpu']:.0f})")  # fmt: skip


def compare(name: str, frames: list, args, rows: list[Row], sizes: list[int]) -> None:
    """SingleNN-GMP and BPNN (G2/G4, or G2 where G2/G4 exceeds ``args.max_gb``) on ``frames``, for each
    element count in ``sizes`` (the whole data when a size is the data's own element count)."""
    all_elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    for k in sizes:
        subset = frames if k >= len(all_elements) else element_subset(frames, k, args.seed)
        elements = sorted({s for a in subset for s in a.get_chemical_symbols()})
        n_test = int(round(0.2 * len(subset)))
        train, test = split(subset, len(subset) - n_test, n_test, args.seed)
        d_nn = nearest_neighbor_distance(train)
        data = f"{name} {len(elements)} el, {len(train)}/{n_test}"
        print(f"[{data}] d_nn {d_nn:.3f} Å", flush=True)
        over = {"optim": {"force_coefficient": args.force_coefficient, "batch_size": 8},
                "dataset": {"elements": elements}}  # fmt: skip
        gmp = config(train, gmp_fp_params(d_nn, args.orders), args.epochs, **over)
        rows.append(model_row(data, "SingleNN-GMP", gmp, test))
        bpnn = {**over, "model": {"name": "bpnn", "hidden_layers": [64, 64]}}
        g2g4 = gsf_fp_params(d_nn)
        gb = estimated_gb(train, "gaussian", g2g4, elements)
        if gb <= args.max_gb:
            rows.append(model_row(data, "BPNN-G2/G4", config(train, g2g4, args.epochs, "gaussian", **bpnn), test))
            continue
        n_g4 = len(elements) * (len(elements) + 1) // 2 * 4
        print(f"[{data}] BPNN-G2/G4 not trained: {len(elements) * 4 + n_g4} features, its derivative blocks "
              f"would take ~{gb:.0f} GB (> --max-gb {args.max_gb:g})", flush=True)  # fmt: skip
        rows.append((data, "BPNN-G2/G4", "-", str(len(elements) * 4 + n_g4), f"~{gb:.0f} (est.)", "-",
                     "not trained", "", ""))  # fmt: skip
        g2 = {"default": {k: v for k, v in g2g4["default"].items() if k != "G4"}}
        rows.append(model_row(data, "BPNN-G2 (stand-in)", config(train, g2, args.epochs, "gaussian", **bpnn), test))


def print_table(rows: list[Row], head: Row = HEAD) -> None:
    widths = [max(len(str(r[k])) for r in [head, *rows]) for k in range(len(head))]
    print("\n| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def common_arguments(p: argparse.ArgumentParser, epochs: int) -> None:
    """The options many_elements.py and slab.py share."""
    p.add_argument("--data-dir", type=Path, default=SHARED, help=f"folder of the shared data ({SHARED})")
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    p.add_argument("--force-coefficient", type=float, default=0.1, help="optim.force_coefficient")
    p.add_argument("--max-gb", type=float, default=4.0, help="largest stored BPNN training set, GB")
    p.add_argument("--orders", type=int, nargs="+", default=list(ORDERS), help="GMP MCSH orders (0 1 2 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and the train/test split")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def start(args) -> float:
    """Set the threads, print the setting; the start time."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    return time.perf_counter()


def finish(rows: list[Row], t0: float, args) -> None:
    """Print the table, the total time, the load at the end and the training settings."""
    print_table(rows)
    print(
        f"\nTotal {time.perf_counter() - t0:.0f} s; load average at the end {os.getloadavg()[0]:.1f}; "
        f"{args.epochs} epochs, force coefficient {args.force_coefficient:g}."
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(p, epochs=300)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 46], help="element counts to train on")
    args = p.parse_args(argv)
    t0 = start(args)
    import ase.io

    path = args.data_dir / "many_element.extxyz"
    if not path.is_file():
        raise SystemExit(f"{path} not found (it ships with ../shared/data)")
    rows: list[Row] = []
    compare("many_element", ase.io.read(path, ":"), args, rows, args.sizes)
    finish(rows, t0, args)


if __name__ == "__main__":
    main()
