"""Scale (issue 11): a sharded geometry store of N small alloy structures, then one recompute-mode epoch from it.

    python benchmarks/scale.py                                   # N = 10**6 (hours on a laptop; for a node)
    python benchmarks/scale.py --n 2000 --subset 500             # end-to-end smoke run, minutes on 2 cores
    python benchmarks/scale.py --scheduler tcp://node:8786       # shards built on a Dask cluster
    python benchmarks/scale.py --device cuda                     # training on a GPU

Structures: fcc cells of 4-32 atoms (1x1x1 to 2x2x2 conventional cells) of one to three of Cu, Ag, Au, Ni,
Pd, Pt, Al in random proportions, lattice constant the composition-weighted mean, strained by up to 3 %,
rattled by 0.02-0.1 Å, labelled with ASE's EMT (energy eV, forces eV/Å). Structure k is made from
``numpy.random.default_rng([seed, k])`` inside the task that writes its shard, so a task's input is just
its index range (:class:`EMTAlloys`).

Printed:

* store: bytes per atom (every shard file / atoms), shards, structures/s of building per worker;
* training on all N (recompute mode, energies + forces, one epoch): seconds, structures/s, and the peak
  RSS of this process (``resource.getrusage``; store building runs in worker processes);
* on the first ``--subset`` structures: training structures/s from a store vs from memory (both
  recompute mode), and seconds per epoch recompute vs stored derivatives (fingerprints and derivative
  blocks computed ahead: that featurization time printed apart).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METALS = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Ni": 3.52, "Pd": 3.89, "Pt": 3.92, "Al": 4.05}  # EMT-ish a (Å)
REPEATS = [(1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 2, 2), (1, 2, 3), (2, 2, 2)]  # 4, 8, 12, 16, 24, 32 atoms


@dataclass(frozen=True)
class EMTAlloys:
    """``count`` EMT-labelled alloy cells from ``seed``: a :class:`amptorch.data.shards.StructureSource`
    whose tasks generate their own structures (nothing but the index range is sent)."""

    seed: int
    count: int

    def __len__(self) -> int:
        return self.count

    @property
    def source_id(self) -> str:
        """Names these structures, so a rerun of a killed build skips its complete shards unread."""
        return f"benchmarks/scale.py EMTAlloys seed={self.seed} count={self.count}"

    def read(self, start: int, stop: int) -> list:
        return [self.structure(k) for k in range(start, stop)]

    def structure(self, k: int):
        from ase.build import bulk

        from amptorch.testing import label_emt

        rng = np.random.default_rng([self.seed, k])
        names = list(METALS)
        species = rng.choice(names, size=int(rng.integers(1, 4)), replace=False)
        weights = rng.dirichlet(np.ones(len(species)))
        reps = REPEATS[int(rng.integers(len(REPEATS)))]
        atoms = bulk("Cu", "fcc", a=1.0, cubic=True).repeat(reps)
        symbols = rng.choice(species, size=len(atoms), p=weights)
        atoms.set_chemical_symbols(list(symbols))
        a = float(np.mean([METALS[s] for s in symbols]))
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell.array * a @ strain, scale_atoms=True)
        atoms.positions += rng.normal(0.0, rng.uniform(0.02, 0.1), atoms.positions.shape)
        return label_emt(atoms)


def config(device: str, dtype: str, loader_workers: int, epochs: int = 1, **dataset) -> dict:
    return {
        "model": {"name": "singlenn", "get_forces": True, "hidden_layers": [32, 32]},
        "optim": {"force_coefficient": 0.1, "lr": 1e-3, "batch_size": 32, "epochs": epochs, "device": device,
                  "scheduler": None},
        "dataset": {"val_split": 0.0, "save_fps": False, "workers": loader_workers or None,
                    "fp_params": {"MCSHs": {"orders": [0, 1, 2], "sigmas": [0.5, 1.0, 1.5]}, "cutoff": 5.0,
                                  "smooth_cutoff": "cosine"}, **dataset},
        "cmd": {"debug": True, "seed": 0, "verbose": False, "dtype": dtype},
    }  # fmt: skip


def train(cfg: dict) -> tuple[float, object]:
    """(seconds of the last epoch, the trainer)."""
    from amptorch.train import AtomsTrainer

    trainer = AtomsTrainer(cfg).train()
    return float(trainer.net.history[-1, "dur"]), trainer


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def rss_split_mib() -> tuple[float, float]:
    """(anonymous, file-backed) resident MiB now: the file-backed part is mostly the store's mapped LMDB pages
    (page cache the kernel can drop), which ``ru_maxrss`` counts too."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon", "RssFile")):
                key, value = line.split(":")
                fields[key] = int(value.split()[0]) / 1024.0
    return fields.get("RssAnon", float("nan")), fields.get("RssFile", float("nan"))


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("shard-*.lmdb"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10**6, help="structures in the store (default 10**6)")
    p.add_argument("--subset", type=int, default=10_000, help="structures of the store-vs-memory comparisons")
    p.add_argument("--shard-size", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="store-building processes")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: local processes)")
    p.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers (dataset.workers)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="store folder (default: a temporary one, removed after)")
    p.add_argument("--skip-full", action="store_true", help="build the store but train only on the subset")
    args = p.parse_args()

    from amptorch.data.shards import build_store

    tmp = None if args.out else tempfile.mkdtemp(prefix="amptorch-scale-")
    root = Path(args.out or tmp)
    try:
        out, sub = root / "store", root / "subset"
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        workers = 1 if args.scheduler else max(1, min(args.workers or 1, -(-args.n // args.shard_size)))
        t0 = time.perf_counter()
        store = build_store(EMTAlloys(args.seed, args.n), out, shard_size=args.shard_size, workers=workers,
                            scheduler=args.scheduler)  # fmt: skip
        build = time.perf_counter() - t0
        atoms = store["atoms"]
        print(
            f"store: {args.n} structures, {atoms} atoms, {len(store['shards'])} shards; "
            f"{store_bytes(out) / atoms:.1f} B/atom; built in {build:.1f} s = "
            f"{args.n / build / workers:.1f} structures/s per worker ({workers} workers, EMT labels included)"
        )
        if not args.skip_full:
            dur, trainer = train(config(args.device, args.dtype, args.loader_workers, features="recompute",
                                        lmdb_path=str(out)))  # fmt: skip
            anon, mapped = rss_split_mib()
            print(
                f"train, all {args.n} from the store (recompute, 1 epoch, {args.device}, {args.dtype}): "
                f"{dur:.1f} s = {args.n / dur:.1f} structures/s; peak RSS {peak_rss_mib():.0f} MiB "
                f"(now: {anon:.0f} MiB anonymous + {mapped:.0f} MiB file-backed, mostly mapped store pages)"
            )
        m = min(args.subset, args.n)
        build_store(EMTAlloys(args.seed, m), sub, shard_size=args.shard_size, workers=0)
        frames = EMTAlloys(args.seed, m).read(0, m)
        from_store, _ = train(config(args.device, args.dtype, args.loader_workers, 2, features="recompute",
                                     lmdb_path=str(sub)))  # fmt: skip
        from_memory, _ = train(config(args.device, args.dtype, args.loader_workers, 2, features="recompute",
                                      raw_data=frames))  # fmt: skip
        t0 = time.perf_counter()
        stored, _ = train(config(args.device, args.dtype, 0, 2, features="stored", raw_data=frames))
        stored_total = time.perf_counter() - t0
        print(
            f"subset of {m} (second epoch): recompute from the store {from_store:.2f} s/epoch "
            f"({m / from_store:.1f} structures/s), from memory {from_memory:.2f} s/epoch "
            f"({m / from_memory:.1f} structures/s); stored derivatives {stored:.2f} s/epoch "
            f"(featurizing + 2 epochs: {stored_total:.1f} s)"
        )
        print(f"peak RSS of this process: {peak_rss_mib():.0f} MiB")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
