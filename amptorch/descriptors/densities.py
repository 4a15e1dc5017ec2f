"""Valence pseudo-densities of the elements as sums of Gaussians, for GMP.

rho(r) = sum_k B_k exp(-beta_k r^2), r in Å, beta in 1/Å^2.

The table is the original AmpTorch's ``pseudodensity_psp_v3`` (70 elements,
``psp_v3.json``). Elements missing from it (e.g. Pr-Lu, the noble gases
beyond Xe, Z > 86) get a documented fallback: one normalized Gaussian holding
the element's valence electrons (Z minus the preceding noble gas's Z) with
<r^2> equal to the square of its covalent radius (ase.data.covalent_radii):
beta = 3 / (2 r_cov^2), B = Z_val (beta / pi)^(3/2).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from amptorch.errors import InputError

TABLE_NAME = "psp_v3"
_NOBLE = (0, 2, 10, 18, 36, 54, 86, 118)


@lru_cache(maxsize=1)
def psp_v3() -> dict[int, tuple[tuple[float, float], ...]]:
    """The shipped table: atomic number -> ((B, beta), ...)."""
    text = resources.files("amptorch.descriptors").joinpath("psp_v3.json").read_text()
    raw = json.loads(text)["elements"]
    return {atomic_numbers[el]: tuple((float(b), float(a)) for b, a in gs) for el, gs in raw.items()}


def valence_electrons(z: int) -> int:
    """Z minus the atomic number of the preceding noble gas (H 1, C 4, Cu 11, Pr 5)."""
    return z - max(n for n in _NOBLE if n < z)


def fallback_density(z: int) -> tuple[tuple[float, float], ...]:
    """One Gaussian with Z_val electrons and rms radius r_cov (see module docstring)."""
    rc = float(covalent_radii[z])
    beta = 3.0 / (2.0 * rc * rc)
    return ((valence_electrons(z) * (beta / np.pi) ** 1.5, beta),)


def read_g_file(path: str | Path) -> tuple[tuple[float, float], ...]:
    """The original's ``<El>_pseudodensity.g`` file: lines of ``B beta``; other lines skipped."""
    rows = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise InputError(f"atom_gaussians: cannot read {path}: {err.strerror}") from None
    for line in lines:
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            continue
    if not rows:
        raise InputError(f"atom_gaussians: {path} has no 'B beta' lines; expected one Gaussian per line")
    return tuple(rows)


def element_number(key: str | int, field: str) -> int:
    """Atomic number of a symbol or number, or InputError naming ``field``."""
    if isinstance(key, (int, np.integer)) and 1 <= int(key) <= 118:
        return int(key)
    if isinstance(key, str) and key in atomic_numbers and key != "X":
        return atomic_numbers[key]
    raise InputError(f"{field}: unknown element {key!r}; expected a chemical symbol such as 'Cu'")


def check_gaussians(z: int, gaussians, field: str) -> tuple[tuple[float, float], ...]:
    """Validate a list of (B, beta) with beta > 0 and finite B."""
    try:
        arr = np.asarray(gaussians, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise InputError(f"{field}[{chemical_symbols[z]}]: got {gaussians!r}; expected [(B, beta), ...]") from None
    if len(arr) == 0 or not np.isfinite(arr).all() or (arr[:, 1] <= 0).any():
        raise InputError(
            f"{field}[{chemical_symbols[z]}]: expected at least one (B, beta) with finite B and beta > 0 (1/Å^2)"
        )
    return tuple((float(b), float(a)) for b, a in arr)
