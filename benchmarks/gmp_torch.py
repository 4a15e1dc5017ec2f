"""GMPTorch (features by torch ops, gradients by autograd) against the C++ kernel (features + derivative blocks).

The two compute the same numbers (tests/models/test_gmp_torch.py); this prints
what each costs per structure on this machine's CPU: the C++ kernel with its
(pairs, F, 3) derivative blocks, and GMPTorch's forward plus one backward pass
(the gradient of a scalar of the features, as a force evaluation needs).
Recompute-mode training pays the torch figure every step and stores nothing.

    python benchmarks/gmp_torch.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from ase.build import bulk

from amptorch.descriptors import GMP
from amptorch.models.gmp_torch import GMPTorch, neighbor_list


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"# load average at start {os.getloadavg()[0]:.2f}; torch {torch.__version__}; min of {args.repeat}")
    gmp = GMP(orders=[0, 1, 2, 3], sigmas=[0.2, 0.69, 1.1, 1.66, 2.66], cutoff=7.0, smooth_cutoff="cosine")
    print("| structure | pairs | threads | C++ + dfeat ms | GMPTorch fwd + bwd ms, float64 | float32 | ratio (f64) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for reps in (3, 6):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(reps)
        atoms.rattle(0.05, seed=1)
        nl = neighbor_list(atoms, gmp.cutoff)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            cpp = best(lambda: gmp.compute(atoms, derivatives=True, n_threads=threads), args.repeat)  # noqa: B023
            row = []
            for dtype in (torch.float64, torch.float32):
                module = GMPTorch(gmp, [29]).to(dtype)
                Z = torch.as_tensor(atoms.numbers)
                cell = torch.as_tensor(atoms.cell.array, dtype=dtype)
                pairs = [torch.as_tensor(nl[k]) for k in ("pair_i", "pair_j", "shifts")]

                def step():
                    pos = torch.as_tensor(atoms.positions, dtype=dtype).requires_grad_(True)  # noqa: B023
                    torch.autograd.grad(module(Z, pos, cell, *pairs).sum(), pos)  # noqa: B023

                row.append(best(step, args.repeat))
            print(f"| Cu {len(atoms)} | {len(nl['pair_i'])} | {threads} | {1e3 * cpp:.1f} | {1e3 * row[0]:.1f} | "
                  f"{1e3 * row[1]:.1f} | {row[0] / cpp:.1f} |")  # fmt: skip
    np.testing.assert_allclose(  # the same numbers (a fresh float64 module: a cast to float32 rounds the tables)
        GMPTorch(gmp, [29])(Z, torch.as_tensor(atoms.positions), torch.as_tensor(atoms.cell.array), *pairs).numpy(),
        gmp.compute(atoms, derivatives=False).features, rtol=1e-10,
    )  # fmt: skip


if __name__ == "__main__":
    main()
