"""Stored derivative blocks vs recomputed features (``dataset.features``): seconds per epoch and memory.

    python benchmarks/recompute.py --data-dir /work/shared/data            # about 7 min on 2 CPU cores
    python benchmarks/recompute.py --quick                                 # smoke run, about 2 min

On ``--n`` structures (default 100) of the cu_emt training split (31-108 Cu atoms; regenerated with
EMT when the file is absent), with forces (force_coefficient 0.1, batch 16, float64, no validation
split), for SingleNN on GMP (20 features, cutoff 6 Å) and BPNN on Gaussian SF (G2/G4, cutoff 6 Å), and
SingleNN on the original's default GMP (20 features, cutoff 15.29 Å) on a fifth of them:

* s/epoch: the epochs after the first (median; ``--epochs``, default 2). "stored": fingerprints and
  derivative blocks computed ahead by the C++ kernel (that time is printed separately), the epoch
  applies the blocks; "recompute": geometry records, neighbour lists built as batches are read (main
  process) and features computed by the torch twin in every step, forces by double backward.
* memory: bytes the stored mode holds for the training split (features + dfeat, plus pair indices)
  against the geometry records (numbers, positions, cell, pbc, labels), and the neighbour list of one
  batch (built per batch, freed after it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# train.py sets OMP_WAIT_POLICY before torch is imported: it comes first
from train import CU_GMP, GSF, ORIGINAL_GMP, SHARED, config, fit, load_cu_emt, split  # noqa: E402, I001

import numpy as np  # noqa: E402

MiB = 2.0**20


def stored_bytes(trainer) -> int:
    """Bytes of the training split's FeatureRecords (every array they hold)."""
    names = ("numbers", "features", "pair_i", "pair_j", "dfeat", "dfeat_strain", "forces", "stress", "cell", "pbc")
    return sum(np.asarray(getattr(r, n)).nbytes for r in trainer._splits[0] for n in names
               if getattr(r, n) is not None)  # fmt: skip


def geometry_bytes(trainer, batch_size: int) -> tuple[int, int]:
    """(bytes of the training split's geometry records, bytes of one batch's neighbour lists)."""
    view = trainer._splits[0]
    held = sum(view.source.records[i].nbytes for i in view.indices)
    batch = view[:batch_size]
    nl = sum(r.pair_i.nbytes + r.pair_j.nbytes + r.shifts.nbytes for r in batch)
    return held, nl


def run(label: str, frames: list, scheme: str, fp: dict, model: dict, epochs: int, rows: list) -> None:
    n, n_atoms = len(frames), sum(len(a) for a in frames)
    times = {}
    for mode in ("stored", "recompute"):
        over = {"model": model, "optim": {"force_coefficient": 0.1, "scheduler": None},
                "dataset": {"val_split": 0, "features": mode}}  # fmt: skip
        r = fit(config(frames, fp, epochs, fp_scheme=scheme, **over))
        durs = np.array(r["trainer"].net.history[:, "dur"], dtype=float)
        per = float(np.median(durs[1:]))
        times[mode] = per
        ahead = f", featurized ahead in {r['featurize_s']:.1f} s" if mode == "stored" else ""
        print(f"[{label}] {mode}: {per:.3f} s/epoch on {n} structures{ahead}", flush=True)
        rows.append((f"{label}, {n} structures", f"s/epoch {mode} (forces)", f"{per:.3f}", ""))
        if mode == "stored":
            held = stored_bytes(r["trainer"])
            rows.append((f"{label}, {n} structures", "stored: bytes held (features + dfeat)",
                         f"{held / MiB:.1f} MiB", f"{held / n_atoms / 1024:.1f} KiB/atom"))  # fmt: skip
            rows[-2] = (*rows[-2][:3], f"+ {r['featurize_s']:.1f} s featurizing ahead")
        else:
            held, nl = geometry_bytes(r["trainer"], 16)
            rows.append((f"{label}, {n} structures", "recompute: bytes held (geometry + labels)",
                         f"{held / MiB:.2f} MiB", f"{held / n_atoms:.0f} B/atom; one batch's neighbour "
                         f"lists {nl / MiB:.1f} MiB"))  # fmt: skip
    faster = "stored" if times["stored"] < times["recompute"] else "recompute"
    ratio = max(times.values()) / min(times.values())
    print(f"[{label}] {faster} is {ratio:.1f}x faster per epoch", flush=True)
    rows.append((f"{label}, {n} structures", "faster per epoch", faster, f"{ratio:.1f}x"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small data and 2 epochs: a smoke run")
    p.add_argument("--data-dir", type=Path, default=SHARED, help=f"folder of cu_emt.extxyz ({SHARED})")
    p.add_argument("--seed", type=int, default=0, help="seed of the training split")
    p.add_argument("--n", type=int, default=100, help="structures (default 100; quick 20)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run (the first is not timed)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    frames, source = load_cu_emt(args.data_dir, 300 if args.quick else 1000)
    train, _ = split(frames, 20 if args.quick else args.n, 0, args.seed)
    epochs = max(2, args.epochs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; cu_emt from {source}", flush=True)
    rows: list = []
    t0 = time.perf_counter()
    run("SingleNN-GMP 6 Å", train, "gmpordernorm", CU_GMP, {"name": "singlenn"}, epochs, rows)
    run("BPNN-G2/G4 6 Å", train, "gaussian", GSF, {"name": "bpnn"}, epochs, rows)
    run("SingleNN-GMP 15.29 Å (original's default)", train[: max(1, len(train) // 5)], "gmpordernorm",
        ORIGINAL_GMP, {"name": "singlenn"}, epochs, rows)  # fmt: skip
    print("\n| benchmark | quantity | value | note |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nTotal {time.perf_counter() - t0:.0f} s.")


if __name__ == "__main__":
    main()
