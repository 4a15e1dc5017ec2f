"""The torch twins (features by torch ops, gradients by autograd) against the C++ kernels (+ derivative blocks).

Each pair computes the same numbers (tests/models/test_twins.py); this prints
what each costs per structure on this machine's CPU: the C++ kernel with its
(pairs, F, 3) derivative blocks, and the twin's forward plus one backward pass
(the gradient of a scalar of the features, as a force evaluation needs).
Recompute-mode training pays the twin's figure every step and stores nothing.
GMP: the original's default orders 0-3 x 5 sigmas at a 7 Å cosine cutoff;
Gaussian SF: benchmarks/featurize.py's 4 G2 + 4 G4 at 6 Å.

    python benchmarks/twins.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from ase.build import bulk

from amptorch.descriptors import GMP, GaussianSF
from amptorch.models.gmp_torch import GMPTorch
from amptorch.models.gsf_torch import GSFTorch
from amptorch.models.twin_terms import neighbor_list

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from structures import best  # noqa: E402


def descriptors() -> dict:
    etas = np.logspace(np.log10(0.05), np.log10(5.0), num=4)
    gsf = GaussianSF(["Cu"], g2=[(e / 36.0, 0.0) for e in etas],
                     g4=[(0.005 / 36.0, z, lam) for z in (1.0, 4.0) for lam in (1.0, -1.0)], cutoff=6.0)  # fmt: skip
    gmp = GMP(orders=[0, 1, 2, 3], sigmas=[0.2, 0.69, 1.1, 1.66, 2.66], cutoff=7.0, smooth_cutoff="cosine")
    return {"GMP": (gmp, lambda dt: GMPTorch(gmp, [29]).to(dt)), "GSF": (gsf, lambda dt: GSFTorch(gsf).to(dt))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"# load average at start {os.getloadavg()[0]:.2f}; torch {torch.__version__}; min of {args.repeat}")
    print("| descriptor | structure | images | threads | C++ + dfeat ms | twin fwd + bwd ms, float64 | float32 |"
          " twin / C++ (float64) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, (desc, make) in descriptors().items():
        for reps in (3, 6):
            atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(reps)
            atoms.rattle(0.05, seed=1)
            nl = neighbor_list(atoms, desc.cutoff)
            Z = torch.as_tensor(atoms.numbers)
            pairs = [torch.as_tensor(nl[k]) for k in ("pair_i", "pair_j", "shifts")]
            for threads in (1, 2):
                torch.set_num_threads(threads)
                cpp = best(lambda: desc.compute(atoms, derivatives=True, n_threads=threads), args.repeat)  # noqa: B023
                row = []
                for dtype in (torch.float64, torch.float32):
                    module = make(dtype)
                    cell = torch.as_tensor(atoms.cell.array, dtype=dtype)  # noqa: B023

                    def step():
                        pos = torch.as_tensor(atoms.positions, dtype=dtype).requires_grad_(True)  # noqa: B023
                        torch.autograd.grad(module(Z, pos, cell, *pairs).sum(), pos)  # noqa: B023

                    row.append(best(step, args.repeat))
                print(f"| {name} | Cu {len(atoms)} | {len(nl['pair_i'])} | {threads} | {1e3 * cpp:.1f} | "
                      f"{1e3 * row[0]:.1f} | {1e3 * row[1]:.1f} | {row[0] / cpp:.1f} |")  # fmt: skip
            same = make(torch.float64)(Z, torch.as_tensor(atoms.positions), torch.as_tensor(atoms.cell.array), *pairs)
            np.testing.assert_allclose(same.numpy(), desc.compute(atoms, derivatives=False).features, rtol=1e-10)


if __name__ == "__main__":
    main()
