"""Trim the original AmpTorch's reference fingerprints into small test files.

Usage: python make_trimmed.py /path/to/shared/data/reference [out_dir]

Reads ``<struct>_<gmp|gsf>.npz`` and ``<struct>_orders0to9_gmp.npz`` (see README.md
beside this script) and writes ``<same name>.npz`` (np.savez_compressed) into
``out_dir`` (default: the folder of this script) with:

* geometry: numbers, positions_wrapped, cell, pbc, elements, cutoff,
  descriptor_setup, fp_params_json (when present);
* features: (n_atoms, n_feat), every atom;
* centres: (k,) the atoms whose derivative rows are kept (all atoms for the small
  structures, 3 chosen atoms for cu108, hea128 and pt_co_slab);
* dfdr: (k, n_feat, n_atoms, 3) d features[centres] / d positions, unthresholded for
  GMP (``dfdr_dense_raw_unthresholded``), from the COO ``fprime_*`` for Gaussian SF.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FILES = {
    # name: centre atoms kept (None: all)
    "h2o_gmp": None,
    "h2o_gsf": None,
    "ethanol_gmp": None,
    "ethanol_gsf": None,
    "ethanol_orders0to9_gmp": None,
    "cu4_orders0to9_gmp": None,
    "cu108_gmp": [0, 53, 107],
    "cu108_gsf": [0, 53, 107],
    "pt_co_slab_gmp": [0, 35, 37],  # bottom-layer Pt, top-layer Pt, C of the CO
    "pt_co_slab_gsf": [0, 35, 37],
    "hea128_gmp": [0, 64, 127],
    "hea128_gsf": [0, 64, 127],
}

KEEP = [
    "numbers",
    "positions_wrapped",
    "cell",
    "pbc",
    "elements",
    "cutoff",
    "descriptor_setup",
    "fp_params_json",
]


def dense_rows(d, centres: np.ndarray) -> np.ndarray:
    n, F = d["features"].shape
    if "dfdr_dense_raw_unthresholded" in d.files:
        return np.asarray(d["dfdr_dense_raw_unthresholded"][centres])
    rows, cols, vals = d["fprime_row"], d["fprime_col"], d["fprime_val"]
    atom = rows // F
    sel = np.isin(atom, centres)
    k = np.searchsorted(centres, atom[sel])
    out = np.zeros((len(centres), F, n * 3))
    out[k, rows[sel] % F, cols[sel]] = vals[sel]
    return out.reshape(len(centres), F, n, 3)


def main(src: str, dst: str | None = None) -> None:
    src_dir = Path(src)
    out_dir = Path(dst) if dst else Path(__file__).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, centres in FILES.items():
        d = np.load(src_dir / f"{name}.npz")
        n = d["features"].shape[0]
        c = np.arange(n) if centres is None else np.array(sorted(centres), dtype=np.int64)
        out = {k: d[k] for k in KEEP if k in d.files}
        out["features"] = d["features"]
        out["centres"] = c
        out["dfdr"] = dense_rows(d, c)
        np.savez_compressed(out_dir / f"{name}.npz", **out)
        size = (out_dir / f"{name}.npz").stat().st_size
        print(f"{name}: {n} atoms, centres {c.tolist() if len(c) < 10 else len(c)}, {size / 1e3:.0f} kB")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:3])
