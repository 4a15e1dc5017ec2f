"""Featurization benchmark: amptorch GMP and Gaussian SF vs the original AmpTorch and dscribe.

    python benchmarks/featurize.py [--repeat 3] [--dscribe-deriv cu108,pt_co_slab]

Structures from ``structures.py`` (copied from the shared reference set): cu108, hea128,
cu864 (rattled fcc Cu / 10-element alloy) and pt_co_slab (Pt(111) + CO, pbc T,T,F).

* GMP: the original's default ``{"MCSHs": {"orders": [0..3], "sigmas": [0.2, 0.69, 1.1, 1.66, 2.66]}}``
  (20 features, cutoff 15.29 Å); GaussianSF: the reference README's G2 (4 etas) / G4 (eta 0.005,
  zeta 1, 4, lambda +-1) set, cutoff 6 Å, cosine cutoff, elements = the structure's.
* Times: best of ``--repeat`` wall-clock seconds of ``compute`` (neighbour list included), without
  and with derivatives (dfeat), on 1 and 2 OpenMP threads; "nl" is the neighbour list alone
  (``neighbor_entries``: vesin plus sorting into pair blocks) and "vesin" the bare vesin call.
* Original AmpTorch (commit 02e5af3, same kind of 2-core machine, best of 3, its Python included)
  from the reference README; ratio = original / ours at 2 threads (> 1: we are faster).
* dscribe ACSF with the same functions (etas / Rc^2, cosine cutoff, its g4 = G4 with R_jk; it adds
  one G1 per element); its derivatives are numerical only and slow, so they are timed once and
  only for the structures in ``--dscribe-deriv``.
* Memory: bytes of dfeat (p, F, 3) against the dense (n, F, n, 3) array the original builds, and
  the tracemalloc peak during ``compute`` (numpy allocations, i.e. the output arrays).
"""

from __future__ import annotations

import argparse
import os
import sys
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from structures import benchmark_structures, best  # noqa: E402

from amptorch.descriptors import GMP, GaussianSF  # noqa: E402
from amptorch.descriptors.neighbors import neighbor_entries  # noqa: E402

GMP_PARAMS = {"MCSHs": {"orders": [0, 1, 2, 3], "sigmas": [0.2, 0.69, 1.1, 1.66, 2.66]}}
G2_ETAS = np.logspace(np.log10(0.05), np.log10(5.0), num=4)
GSF_PARAMS = {
    "default": {
        "G2": {"etas": G2_ETAS, "rs_s": [0.0]},
        "G4": {"etas": [0.005], "zetas": [1.0, 4.0], "gammas": [1.0, -1.0]},
        "cutoff": 6.0,
    }
}
# original AmpTorch, seconds: (no derivatives, derivatives)
ORIGINAL = {
    ("GMP", "cu108"): (0.70, 1.40),
    ("GMP", "hea128"): (0.87, 1.73),
    ("GMP", "cu864"): (6.3, 14.7),
    ("GSF", "cu108"): (0.13, 0.18),
    ("GSF", "hea128"): (0.33, 0.69),
    ("GSF", "cu864"): (1.12, 1.75),
}
STRUCTS = ["cu108", "hea128", "cu864", "pt_co_slab"]


def dscribe_acsf(atoms):
    from dscribe.descriptors import ACSF

    rc = GSF_PARAMS["default"]["cutoff"]
    g4 = GSF_PARAMS["default"]["G4"]
    return ACSF(
        r_cut=rc,
        g2_params=[[e / rc**2, 0.0] for e in G2_ETAS],
        g4_params=[[e / rc**2, z, lam] for e in g4["etas"] for z in g4["zetas"] for lam in g4["gammas"]],
        species=sorted(set(atoms.get_chemical_symbols())),
        periodic=bool(atoms.pbc.any()),
    )


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if x < 100 else f"{x:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dscribe-deriv", default="cu108,pt_co_slab", help="structures for dscribe derivatives")
    ap.add_argument("--no-dscribe", action="store_true")
    args = ap.parse_args()
    dscribe_deriv = set(filter(None, args.dscribe_deriv.split(",")))
    structures = benchmark_structures()
    rows, mem_rows, agree = [], [], {}
    for name in STRUCTS:
        atoms = structures[name]
        n = len(atoms)
        elements = sorted(set(atoms.get_chemical_symbols()))
        pos, cell, pbc = atoms.positions, atoms.cell.array, atoms.pbc
        for kind, desc in (
            ("GMP", GMP.from_amptorch(GMP_PARAMS)),
            ("GSF", GaussianSF.from_amptorch(GSF_PARAMS, elements)),
        ):
            t = {}
            for deriv in (False, True):
                for threads in (1, 2):
                    t[deriv, threads] = best(
                        lambda d=deriv, k=threads, c=desc, a=atoms: c.compute(a, derivatives=d, n_threads=k),
                        args.repeat,
                    )
            t_nl = best(lambda d=desc, p=pos, c=cell, b=pbc: neighbor_entries(p, c, b, d.cutoff), args.repeat)
            t_vesin = best(lambda d=desc, a=atoms: _vesin(a, d.cutoff), args.repeat)
            ds = ds_d = None
            if kind == "GSF" and not args.no_dscribe:
                acsf = dscribe_acsf(atoms)
                ds = best(lambda f=acsf, a=atoms: f.create(a), args.repeat)
                if name in dscribe_deriv:
                    ds_d = best(lambda f=acsf, a=atoms: f.derivatives(a, attach=True), 1)
                # same functions: dscribe's G2 values (after its G1, per element, Z order) equal ours
                n_el = len(elements)
                ref = acsf.create(atoms)[:, : 5 * n_el].reshape(n, n_el, 5)[:, :, 1:]
                ours = desc.compute(atoms, derivatives=False).features[:, : 4 * n_el].reshape(n, n_el, 4)
                agree[name] = float(np.abs(ref - ours).max() / np.abs(ours).max())
            orig = ORIGINAL.get((kind, name))
            rows.append((name, n, kind, desc.length, t, t_nl, t_vesin, orig, ds, ds_d))
            # memory of the derivative arrays
            tracemalloc.start()
            rec = desc.compute(atoms, derivatives=True, n_threads=2)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            mem_rows.append((name, kind, n, rec.n_pairs, rec.dfeat.nbytes, n * desc.length * n * 3 * 8, peak))
            del rec
    print_tables(rows, mem_rows, os.cpu_count())
    if agree:
        print(
            "dscribe G2 vs ours, max relative difference: "
            + ", ".join(f"{k} {v:.1e}" for k, v in agree.items())
        )


def _vesin(atoms, cutoff: float):
    import vesin

    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    if atoms.pbc.all():
        return nl.compute(points=atoms.positions, box=atoms.cell.array, periodic=True, quantities="ijS")
    from amptorch.descriptors.neighbors import _box

    box = _box(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    return nl.compute(points=atoms.positions, box=box, periodic=atoms.pbc.tolist(), quantities="ijS")


def print_tables(rows, mem_rows, cores) -> None:
    print(f"# amptorch featurization, best of N wall-clock seconds; {cores} cores; float64")
    head = (
        f"{'struct':<11}{'n':>5} {'desc':<4}{'F':>4} | {'nl':>6} {'vesin':>6} | {'1t':>7} {'2t':>7} "
        f"{'1t+d':>7} {'2t+d':>7} | {'atoms/s 2t':>10} {'+d':>8} | {'orig':>5} {'orig+d':>6} "
        f"{'x orig':>6} {'x orig+d':>8} | {'dscribe':>7} {'dscr+d':>7} {'x dscr':>6} {'x dscr+d':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, n, kind, F, t, t_nl, t_vesin, orig, ds, ds_d in rows:
        o, od = orig if orig else (None, None)
        print(
            f"{name:<11}{n:>5} {kind:<4}{F:>4} | {t_nl:>6.4f} {t_vesin:>6.4f} | {t[False, 1]:>7.4f} "
            f"{t[False, 2]:>7.4f} {t[True, 1]:>7.4f} {t[True, 2]:>7.4f} | {n / t[False, 2]:>10.0f} "
            f"{n / t[True, 2]:>8.0f} | {fmt(o, 2):>5} {fmt(od, 2):>6} "
            f"{fmt(o / t[False, 2] if o else None, 1):>6} {fmt(od / t[True, 2] if od else None, 1):>8} | "
            f"{fmt(ds, 4):>7} {fmt(ds_d, 2):>7} {fmt(ds / t[False, 2] if ds else None, 1):>6} "
            f"{fmt(ds_d / t[True, 2] if ds_d else None, 0):>8}"
        )
    print(
        "nl: neighbor_entries (vesin + pair blocks); 1t/2t: n_threads; +d: with dfeat; x orig / x dscr: "
        "their time / ours (2 threads); '-': not measured"
    )
    print()
    print("# derivative memory: dfeat (p, F, 3) float64 vs the original's dense (n, F, n, 3)")
    head = (
        f"{'struct':<11}{'desc':<5}{'n':>5}{'pairs p':>9} {'dfeat MB':>9} {'dense MB':>9} {'peak MB':>8} "
        f"{'B/pair':>7}"
    )
    print(head)
    print("-" * len(head))
    for name, kind, n, p, nbytes, dense, peak in mem_rows:
        print(
            f"{name:<11}{kind:<5}{n:>5}{p:>9} {nbytes / 1e6:>9.2f} {dense / 1e6:>9.2f} {peak / 1e6:>8.2f} "
            f"{nbytes / max(p, 1):>7.0f}"
        )
    print("peak: tracemalloc peak during compute(derivatives=True) (numpy allocations: the output arrays)")


if __name__ == "__main__":
    main()
