"""Slabs with adsorbates: SingleNN-GMP and BPNN-G2/G4 test errors on semi-periodic surfaces.

    python benchmarks/slab.py                  # full size: 300 epochs (about 20 min on 2 cores)
    python benchmarks/slab.py --epochs 40      # smoke run (minutes)

Data: ``../shared/data/slab_emt.extxyz`` (600 fcc(111)/(100) slabs of Pt Pd Ni Cu Au Ag, 40 % random surface
alloys, H/O/C/N/CO/OH adsorbates, rattled; pbc (T, T, F) with 7 Å of vacuum each side; ASE EMT energy and
forces), split by seed into 80 % training and 20 % test. Both models as in ``benchmarks/many_elements.py``
(GMP widths and cutoff from the data's nearest-neighbour distance; the original's G2/G4 set with the same
cutoff), trained on energies and forces. Columns as there. Timings are inflated on a shared machine: the load
average is printed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/train.py; must precede importing torch

import argparse  # noqa: E402

from many_elements import common_arguments, compare, finish, start  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(p, epochs=300)
    args = p.parse_args(argv)
    t0 = start(args)
    import ase.io

    path = args.data_dir / "slab_emt.extxyz"
    if not path.is_file():
        raise SystemExit(f"{path} not found (it ships with ../shared/data)")
    frames = ase.io.read(path, ":")
    rows: list = []
    n_elements = len({s for a in frames for s in a.get_chemical_symbols()})
    compare("slab_emt", frames, args, rows, [n_elements])
    finish(rows, t0, args)


if __name__ == "__main__":
    main()
