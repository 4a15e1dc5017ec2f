"""Default fingerprint settings scaled to the data's nearest-neighbour distance d_nn (Å).

GMP probe widths and cutoffs are lengths, so one fixed set fits one kind of bonding. In units of d_nn the
hand-tuned sets of the benchmarks roughly agree (Si: σ 0.4–2.4 Å, cutoff 6.5 Å at d_nn 2.31 Å; Cu: σ 0.4–2.0
Å, 6 Å at 2.36 Å): σ from 0.17 d_nn (the first shell's own density) to 1.0 d_nn, cutoff 2.75 d_nn (through the third
shell of close-packed and diamond lattices). On the mlearn validation splits (docs/accuracy.md) a wider set
(σ to 1.3 d_nn, cutoff 3.2 d_nn) was worse, and MCSH order 4 was better than orders 0–3 on Mo, Si and Ge and
equal on Li, so the default orders are 0–4. The original's Gaussian SF widths are in units of 1/Rc², so only
their cutoff needs the scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from amptorch.descriptors.neighbors import neighbor_entries
from amptorch.errors import InputError

ORDERS = (0, 1, 2, 3, 4)  # MCSH orders: order 4 lowered the mlearn validation energy errors of Mo, Si, Ge by 25-34 %
SIGMA_RANGE = (0.17, 1.0)  # widest and narrowest GMP probe, in units of d_nn
# widths over SIGMA_RANGE: 8 lowered the mlearn validation force errors of all four sets against 6 (2-7 %)
N_SIGMAS = 8
CUTOFF_FACTOR = 2.75  # cutoff / d_nn
SEARCH = 6.0  # Å: neighbour search radius for d_nn; wider than any element's first shell (Cs: 5.3 Å)
MAX_IMAGES = 256  # structures read for d_nn: the median converges long before


def nearest_neighbor_distance(images: Sequence, max_images: int = MAX_IMAGES, search: float = SEARCH) -> float:
    """The median over atoms of each atom's distance to its nearest neighbour (periodic images included), Å.

    Args:
        images: ase.Atoms (anything with ``positions``, ``cell`` and ``pbc``); at most ``max_images`` of them,
            evenly strided, are read.
        max_images: structures read, >= 1.
        search: neighbour search radius, Å; atoms without a neighbour within it (isolated) are left out.

    Raises:
        InputError: no images, a bad structure (atoms closer than 0.1 Å), or no atom with a neighbour within
            ``search``.
    """
    if max_images < 1:
        raise InputError(f"got {max_images}; expected >= 1", "max_images")
    if not len(images):
        raise InputError("got no structures; expected at least one", "images")
    picks = np.unique(np.linspace(0, len(images) - 1, min(len(images), max_images)).round().astype(int))
    nearest = []
    for k in picks:
        atoms = images[int(k)]
        try:
            entries = neighbor_entries(atoms.positions, np.asarray(atoms.cell), atoms.pbc, search, index=int(k))
        except AttributeError:
            raise InputError(f"got {type(atoms).__name__}; expected ase.Atoms", f"images[{k}]") from None
        dist = np.linalg.norm(entries.ed, axis=1)
        counts = np.diff(entries.estart)
        if not len(dist):
            continue
        # reduceat over each atom's block of entries; atoms without entries are dropped first
        starts = entries.estart[:-1][counts > 0]
        nearest.append(np.minimum.reduceat(dist, starts))
    if not nearest:
        raise InputError(f"no atom has a neighbour within {search:g} Å; expected condensed structures", "images")
    return float(np.median(np.concatenate(nearest)))


def gmp_fp_params(
    d_nn: float,
    orders: Sequence[int] = ORDERS,
    n_sigmas: int = N_SIGMAS,
    sigma_range: tuple[float, float] = SIGMA_RANGE,
    cutoff_factor: float = CUTOFF_FACTOR,
) -> dict:
    """GMP ``fp_params`` for a nearest-neighbour distance ``d_nn`` (Å): ``n_sigmas`` widths evenly spaced over
    ``sigma_range`` × d_nn, cutoff ``cutoff_factor`` × d_nn with a cosine smooth cutoff (a hard cutoff this
    short cuts the widest probes, so the energy would jump)."""
    _check_scale(d_nn, n_sigmas, cutoff_factor)
    lo, hi = sigma_range
    if not 0 < lo <= hi:
        raise InputError(f"got {sigma_range}; expected 0 < low <= high (units of d_nn)", "sigma_range")
    sigmas = np.linspace(lo, hi, n_sigmas) * d_nn
    return {
        "MCSHs": {"orders": [int(o) for o in orders], "sigmas": [round(float(s), 3) for s in sigmas]},
        "cutoff": round(cutoff_factor * d_nn, 2),
        "smooth_cutoff": "cosine",
    }


def gsf_fp_params(d_nn: float, cutoff_factor: float = CUTOFF_FACTOR) -> dict:
    """Gaussian SF ``fp_params`` (the original's reference set: 4 G2 η from 0.05 to 5 /Rc², G4 η 0.005 /Rc²,
    ζ 1 and 4, λ ±1) with the cutoff ``cutoff_factor`` × ``d_nn`` (Å)."""
    _check_scale(d_nn, 1, cutoff_factor)
    return {
        "default": {
            "G2": {"etas": np.logspace(np.log10(0.05), np.log10(5.0), num=4).round(4).tolist(), "rs_s": [0.0]},
            "G4": {"etas": [0.005], "zetas": [1.0, 4.0], "gammas": [1.0, -1.0]},
            "cutoff": round(cutoff_factor * d_nn, 2),
        }
    }


def default_fp_params(images: Sequence, fp_scheme: str = "gmpordernorm") -> dict:
    """``fp_params`` for ``images`` (ase.Atoms) from their nearest-neighbour distance: what
    ``dataset.fp_params: "auto"`` gives ``fp_scheme`` (its registry entry's ``auto_params``)."""
    from amptorch.descriptors.registry import by_scheme

    return auto_params(by_scheme(fp_scheme), nearest_neighbor_distance(images))


def auto_params(entry, nn_distance: float) -> dict:
    """The ``fp_params`` a registry entry's descriptor defaults to for ``nn_distance`` (Å); InputError when the
    descriptor has no default."""
    if entry.auto_params is None:
        raise InputError(f"'auto': the descriptor {entry.kind} has no default settings; expected its fp_params",
                         "fp_params")  # fmt: skip
    return entry.auto_params(nn_distance)


def _check_scale(d_nn: float, n: int, factor: float) -> None:
    if not (np.isfinite(d_nn) and d_nn > 0):
        raise InputError(f"got {d_nn}; expected a nearest-neighbour distance > 0 Å", "d_nn")
    if n < 1:
        raise InputError(f"got {n}; expected >= 1", "n_sigmas")
    if not (np.isfinite(factor) and factor > 0):
        raise InputError(f"got {factor}; expected > 0", "cutoff_factor")
