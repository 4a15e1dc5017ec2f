"""Deterministic benchmark structures shared by all reference/peer measurements, and the timer they use.
Usage: from structures import benchmark_structures; d = benchmark_structures()  -> dict name -> ase.Atoms
"""

import time

import numpy as np
from ase.build import add_adsorbate, bulk, fcc111, molecule


def benchmark_structures():
    rng = np.random.default_rng(0)
    out = {}
    # 1. isolated molecule
    out["h2o"] = molecule("H2O")
    m = molecule("CH3CH2OH")
    m.center(vacuum=5.0)
    out["ethanol"] = m
    # 2. periodic bulk, 108 atoms, rattled
    cu = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))
    cu.positions += rng.normal(0, 0.05, cu.positions.shape)
    out["cu108"] = cu
    # 3. semi-periodic slab with adsorbate (periodic in x,y; vacuum in z)
    slab = fcc111("Pt", size=(3, 3, 4), vacuum=8.0)
    add_adsorbate(slab, molecule("CO"), 1.9, "ontop")
    slab.pbc = (True, True, False)
    out["pt_co_slab"] = slab
    # 4. many-element periodic random alloy, 10 elements, 128 atoms
    hea = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 2, 8))
    elems = ["Cu", "Ni", "Co", "Fe", "Cr", "Mn", "Pd", "Pt", "Ag", "Au"]
    hea.set_chemical_symbols([elems[i % 10] for i in rng.permutation(len(hea))])
    hea.positions += rng.normal(0, 0.05, hea.positions.shape)
    out["hea128"] = hea
    # 5. large periodic cell for throughput: 864-atom Cu
    big = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((6, 6, 6))
    big.positions += rng.normal(0, 0.05, big.positions.shape)
    out["cu864"] = big
    return out


if __name__ == "__main__":
    for k, a in benchmark_structures().items():
        print(k, len(a), a.get_chemical_formula(), a.pbc)


def best(fn, repeat: int) -> float:
    """The least wall-clock seconds of ``repeat`` calls of ``fn`` (least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
