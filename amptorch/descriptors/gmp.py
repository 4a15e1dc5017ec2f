"""Gaussian multipole (GMP) fingerprints (Lei & Medford, J. Phys. Chem. Lett. 2022).

The valence density around atom i, a sum of Gaussians on every neighbour
(itself included), is probed with Maxwell-Cartesian spherical harmonics of
order n times a Gaussian of width sigma. Every integral is analytic (see
``src/gmp.cpp``). One feature per (order, sigma), whatever the number of
elements: element identity enters through the densities.

Two schemes of the original AmpTorch:

* ``gmpordernorm`` (default): probe amplitude A = (1/(sigma sqrt(2 pi)))^3,
  feature = sum over every component of multiplicity x M^2 (rotation
  invariant), or its square root with ``square=False``.
* ``gmp`` (older): one feature per (order, group, sigma), where a group is
  a class of components (e.g. order 2: xx-type and xy-type), amplitude
  A = 1/(sigma sqrt(2 pi)), feature = sqrt(sum_c M_c^2) by default.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from ase.data import chemical_symbols

from amptorch.descriptors import densities as dens
from amptorch.descriptors import mcsh
from amptorch.descriptors.base import Descriptor, as_float_list, check_cutoff, species_index
from amptorch.descriptors.defaults import gmp_fp_params
from amptorch.descriptors.neighbors import NeighborEntries
from amptorch.descriptors.registry import DescriptorEntry, register
from amptorch.errors import InputError, where

SMOOTH_CUTOFFS = {None: 0, "cosine": 1, "polynomial": 2}
MIN_SIGMA = 0.01  # Å; narrower probes are refused (the default cutoff rule rounds them to 0 Å)


def default_cutoff(sigma_max: float, threshold: float = 1e-8) -> float:
    """The original's rule: where the widest probe Gaussian A' exp(-a' r^2) falls below 1e-8 (Å, 2 decimals).

    A' = 1/(sigma sqrt(2 pi)), a' = 1/(2 sigma^2); 15.29 Å for sigma_max = 2.66 Å.
    """
    a_amp = 1.0 / (sigma_max * math.sqrt(2.0 * math.pi))
    a_exp = 1.0 / (2.0 * sigma_max**2)
    return round(math.sqrt(math.log(threshold / a_amp) / -a_exp), 2)


def hard_cutoff_truncation(cutoff: float, sigma_max: float) -> float:
    """The widest probe Gaussian exp(-r^2 / (2 sigma^2)) at r = cutoff, relative to its peak."""
    return math.exp(-(cutoff**2) / (2.0 * sigma_max**2))


# (cutoff, widest sigma) settings already warned about in this process
_WARNED_HARD_CUTOFFS: set[tuple[float, float]] = set()
HARD_CUTOFF_TOLERANCE = 1e-6


def _warn_hard_cutoff(cutoff: float, sigma_max: float) -> None:
    """Warn (once per setting) when a hard cutoff cuts the widest probe Gaussian above 1e-6 of its peak.

    There the energy jumps as a neighbour crosses the cutoff, and MD does not conserve energy. The
    default cutoff (``default_cutoff``) never warns.
    """
    cut = hard_cutoff_truncation(cutoff, sigma_max)
    key = (cutoff, sigma_max)
    if cut <= HARD_CUTOFF_TOLERANCE or cutoff >= default_cutoff(sigma_max) or key in _WARNED_HARD_CUTOFFS:
        return
    _WARNED_HARD_CUTOFFS.add(key)
    needed = math.ceil(sigma_max * math.sqrt(2.0 * math.log(1.0 / HARD_CUTOFF_TOLERANCE)) * 100.0) / 100.0
    warnings.warn(
        f"GMP: the hard cutoff {cutoff:g} Å cuts the widest probe Gaussian (sigma {sigma_max:g} Å) at {cut:.2e} "
        f"of its peak, so the energy jumps as neighbours cross it; a cutoff of at least {needed:.2f} Å keeps "
        'that below 1e-6, and smooth_cutoff="cosine" (fp_params "smooth_cutoff": "cosine") makes the energy '
        "continuous, so MD conserves energy",
        UserWarning,
        stacklevel=_caller_outside_package(),
    )


def _caller_outside_package() -> int:
    """warnings.warn stacklevel of the first caller outside amptorch (for a call made in this module's function)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    level, frame = 1, sys._getframe(1)  # the function that will call warnings.warn
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


class GMP(Descriptor):
    """GMP fingerprints.

    Args:
        orders: MCSH orders, 0..9.
        sigmas: probe widths (Å), > 0.
        cutoff: neighbour cutoff (Å); default ``default_cutoff(max(sigmas))``.
        densities: per-element Gaussians {symbol or Z: [(B, beta), ...]}
            overriding the shipped psp_v3 table.
        fallback: give elements absent from the table a single-Gaussian
            density (see ``densities.fallback_density``); if False they raise.
        square: feature = sum of multiplicity x M^2 (True) or its square root.
        solid_harmonics: use the solid MCSH (True, the original's default);
            False drops r^2 factors and scales by 1/rs per power, as the original.
        rs, rs_scale: for ``solid_harmonics=False``: 1/rs = 1/rs (constant) or
            1/(rs_scale * sigma) when ``rs_scale`` is given.
        smooth_cutoff: None (hard cutoff, matches the original), "cosine" or
            "polynomial" (exponent ``cutoff_gamma``) on each neighbour's density.
        probes: explicit probe list instead of orders x sigmas: (order, sigma)
            pairs (gmpordernorm) or (order, group, sigma) triples (the older
            "gmp" scheme, group 1-based as in ``mcsh.groups``).
    """

    def __init__(
        self,
        orders: Sequence[int] = (0, 1, 2, 3),
        sigmas: Sequence[float] = (0.2, 0.69, 1.1, 1.66, 2.66),
        cutoff: float | None = None,
        densities: Mapping | None = None,
        fallback: bool = True,
        square: bool | None = None,
        solid_harmonics: bool = True,
        rs: float = 1.0,
        rs_scale: float | None = None,
        smooth_cutoff: str | None = None,
        cutoff_gamma: float = 2.0,
        probes: Sequence[Sequence[float]] | None = None,
    ):
        if probes is None:
            orders = self._check_orders(orders)
            sigmas = self._check_sigmas(sigmas, "sigmas")
            probes = [(o, s) for o in orders for s in sigmas]
        self.probes = self._check_probes(probes)
        self.grouped = len(self.probes[0]) == 3
        self.square = (not self.grouped) if square is None else bool(square)
        self.solid_harmonics = bool(solid_harmonics)
        self.rs = float(rs)
        self.rs_scale = None if rs_scale is None else float(rs_scale)
        if not self.solid_harmonics and not (self.rs > 0 and (self.rs_scale is None or self.rs_scale > 0)):
            raise InputError("rs: expected rs > 0 and rs_scale > 0 (Å) for solid_harmonics=False")
        self.sigmas = sorted({p[-1] for p in self.probes})
        if cutoff is None:
            cutoff = default_cutoff(max(self.sigmas))
        self._cutoff, self.cutoff_gamma = check_cutoff(
            cutoff, smooth_cutoff, cutoff_gamma, SMOOTH_CUTOFFS, ("cutoff", "smooth_cutoff", "cutoff_gamma")
        )
        self.smooth_cutoff = smooth_cutoff
        self.fallback = bool(fallback)
        self.densities = {
            z: dens.check_gaussians(z, g, "densities")
            for z, g in ((dens.element_number(k, "densities"), g) for k, g in (densities or {}).items())
        }
        self._kernel_tables = self._build_kernel_tables()
        if smooth_cutoff is None:
            _warn_hard_cutoff(self._cutoff, max(self.sigmas))

    # -- parameter checks --------------------------------------------------
    @staticmethod
    def _check_orders(orders) -> list[int]:
        items = orders.tolist() if isinstance(orders, np.ndarray) else orders
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            items = [items]
        out = []
        for o in items:
            if isinstance(o, (bool, np.bool_)) or not isinstance(o, numbers.Integral) or not 0 <= o <= mcsh.MAX_ORDER:
                raise InputError(f"orders: got {o!r}; expected integers 0..{mcsh.MAX_ORDER}")
            if int(o) in out:
                raise InputError(f"orders: order {int(o)} is given twice; expected each order once")
            out.append(int(o))
        if not out:
            raise InputError("orders: empty; expected at least one MCSH order 0..9")
        return out

    @staticmethod
    def _check_sigmas(sigmas, name: str) -> list[float]:
        out = as_float_list(sigmas, name)
        if not out or min(out) <= 0:
            raise InputError(f"{name}: got {sigmas!r}; expected positive widths in Å")
        if min(out) < MIN_SIGMA:
            raise InputError(
                f"{name}: got {min(out)!r}; expected widths of at least {MIN_SIGMA} Å "
                "(a narrower probe sees no neighbour: atoms are at least 0.1 Å apart)"
            )
        seen = set()
        for s in out:
            if s in seen:
                raise InputError(f"{name}: width {s!r} is given twice; expected each width once")
            seen.add(s)
        return out

    def _check_probes(self, probes) -> list[tuple]:
        out = []
        for p in probes:
            p = tuple(p)
            if len(p) not in (2, 3):
                raise InputError(f"probes: got {p!r}; expected (order, sigma) or (order, group, sigma)")
            order = self._check_orders([p[0]])[0]
            sigma = self._check_sigmas([p[-1]], "sigmas")[0]
            if len(p) == 3:
                n_groups = len(mcsh.groups(order))
                if (
                    isinstance(p[1], (bool, np.bool_))
                    or not isinstance(p[1], numbers.Integral)
                    or not 1 <= p[1] <= n_groups
                ):
                    raise InputError(f"groups: order {order} has groups 1..{n_groups}; got {p[1]!r}")
                probe = (order, int(p[1]), sigma)
            else:
                probe = (order, sigma)
            if probe in out:
                raise InputError(f"probes: {probe!r} is given twice; expected each probe once")
            out.append(probe)
        if not out:
            raise InputError("probes: empty; expected at least one probe")
        if len({len(p) for p in out}) != 1:
            raise InputError("probes: mix of (order, sigma) and (order, group, sigma); expected one kind")
        return out

    # -- tables for the kernel --------------------------------------------
    @property
    def kernel_tables(self):
        """The kernels' probe tables and settings (``amptorch._core.GMPTables``, read-only), built once.

        Fields (each a read-only property): ``sigma_alpha`` 1/(2 sigma^2) per width; per probe ``probe_sigma``
        (width index), ``probe_order``, ``probe_amp``, ``comp_start`` (its components); per component
        ``comp_weight``, ``comp_poly``; per polynomial ``poly_start`` (its monomials); per monomial
        ``mono_coef``, ``mono_pow`` (k, l, m); ``harmonic`` (= solid_harmonics: the kernel's fast path),
        ``square``, ``include_self``, ``cutoff_kind``, ``cutoff``, ``cutoff_gamma``, ``max_power``.
        ``kernel_tables.with_harmonic(False)`` is a copy that runs the general moment path.
        """
        return self._kernel_tables

    def _build_kernel_tables(self):
        """Flatten probes into components and unique polynomials (monomial tables) for the kernel."""
        from amptorch import _core

        sigma_index = {s: k for k, s in enumerate(self.sigmas)}
        probe_sigma, probe_order, probe_amp = [], [], []
        comp_start, comp_weight, comp_poly = [0], [], []
        poly_index: dict[tuple, int] = {}
        poly_start, mono_coef, mono_pow = [0], [], []
        for probe in self.probes:
            order, sigma = probe[0], probe[-1]
            amp = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
            if self.grouped:
                comps = mcsh.group_components(mcsh.groups(order)[probe[1] - 1])
                weights = [1.0] * len(comps)
            else:
                amp = amp**3
                comps = mcsh.components(order)
                weights = [float(mcsh.multiplicity(*c)) for c in comps]
            inv_rs = 1.0 / (self.rs_scale * sigma if self.rs_scale is not None else self.rs)
            probe_sigma.append(sigma_index[sigma])
            probe_order.append(order)
            probe_amp.append(amp)
            for comp, w in zip(comps, weights, strict=True):
                key = comp if self.solid_harmonics else (comp, inv_rs)
                if key not in poly_index:
                    poly_index[key] = len(poly_index)
                    for coef, k, l, m in mcsh.monomials(*comp, solid=self.solid_harmonics, inv_rs=inv_rs):
                        mono_coef.append(coef)
                        mono_pow.append((k, l, m))
                    poly_start.append(len(mono_coef))
                comp_poly.append(poly_index[key])
                comp_weight.append(w)
            comp_start.append(len(comp_weight))
        i64 = np.int64
        return _core.GMPTables(
            sigma_alpha=np.array([1.0 / (2.0 * s * s) for s in self.sigmas]),
            probe_sigma=np.array(probe_sigma, dtype=i64),
            probe_order=np.array(probe_order, dtype=i64),
            probe_amp=np.array(probe_amp),
            comp_start=np.array(comp_start, dtype=i64),
            comp_weight=np.array(comp_weight),
            comp_poly=np.array(comp_poly, dtype=i64),
            poly_start=np.array(poly_start, dtype=i64),
            mono_coef=np.array(mono_coef),
            mono_pow=np.array(mono_pow, dtype=i64).reshape(-1, 3),
            harmonic=self.solid_harmonics,
            square=self.square,
            include_self=True,
            cutoff_kind=SMOOTH_CUTOFFS[self.smooth_cutoff],
            cutoff=self._cutoff,
            cutoff_gamma=self.cutoff_gamma,
        )

    def density(self, z: int) -> tuple[tuple[float, float], ...] | None:
        """(B, beta) Gaussians of element z: user override, table, fallback (or None)."""
        if z in self.densities:
            return self.densities[z]
        table = dens.psp_v3()
        if z in table:
            return table[z]
        return dens.fallback_density(z) if self.fallback else None

    # -- Descriptor interface ---------------------------------------------
    @property
    def cutoff(self) -> float:
        return self._cutoff

    @property
    def feature_names(self) -> list[str]:
        if self.grouped:
            return [f"gmp_o{o}_g{g}_s{s:g}" for o, g, s in self.probes]
        return [f"gmp_o{o}_s{s:g}" for o, s in self.probes]

    def settings(self) -> dict:
        return {
            "kind": "GMP",
            "probes": [list(p) for p in self.probes],
            "cutoff": self._cutoff,
            "square": self.square,
            "solid_harmonics": self.solid_harmonics,
            "rs": self.rs,
            "rs_scale": self.rs_scale,
            "smooth_cutoff": self.smooth_cutoff,
            "cutoff_gamma": self.cutoff_gamma,
            "table": dens.TABLE_NAME,
            "fallback": self.fallback,
            "densities": {chemical_symbols[z]: [list(g) for g in gs] for z, gs in sorted(self.densities.items())},
        }

    @classmethod
    def from_settings(cls, settings: dict) -> GMP:
        # "table" names the shipped density table (recorded for people; there is one)
        return cls(**{k: v for k, v in settings.items() if k != "table"})

    def check_elements(self, numbers: np.ndarray, index: int | None = None) -> None:
        for z in np.unique(numbers).tolist():
            if self.density(z) is None:
                raise InputError(
                    f"{where(index)}numbers: element {chemical_symbols[z]} has no density in the "
                    f"{dens.TABLE_NAME} table and fallback=False; expected one of the table's elements "
                    "or densities={...} for it"
                )

    def species_densities(self, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The kernels' density arrays for a structure's atoms.

        Returns:
            species (n,) index of each atom's element, gstart (S + 1,) its
            Gaussians are gB[gstart[s]:gstart[s+1]], gB (G,) and gbeta (G,)
            (amplitude and exponent Å^-2 of each Gaussian).
        """
        uniq, species = species_index(numbers)
        gs = [self.density(int(z)) for z in uniq]
        gstart = np.zeros(len(gs) + 1, dtype=np.int64)
        np.cumsum([len(g) for g in gs], out=gstart[1:])
        flat = np.array([row for g in gs for row in g], dtype=np.float64).reshape(-1, 2)
        return species, gstart, np.ascontiguousarray(flat[:, 0]), np.ascontiguousarray(flat[:, 1])

    @property
    def max_order(self) -> int:
        return int(max(p[0] for p in self.probes))

    def _kernel(self, numbers, nl: NeighborEntries, derivatives, strain, float32, n_threads, index):
        from amptorch import _core

        species, gstart, gB, gbeta = self.species_densities(numbers)
        return _core.gmp(
            self._kernel_tables, species, nl.estart, nl.ej, nl.ed, nl.epair, len(nl.pair_i), gstart, gB, gbeta,
            derivatives=derivatives, strain=strain, float32=float32, n_threads=n_threads,
        )  # fmt: skip

    # -- the original's parameter dicts -----------------------------------
    @classmethod
    def from_amptorch(cls, fp_params: Mapping, fp_scheme: str = "gmpordernorm", **kwargs) -> GMP:
        """GMP from the original AmpTorch's ``fp_params``.

        Accepts ``{"MCSHs": {"orders": [...], "sigmas": [...]}, ...}``, the
        ``{"MCSHs_detailed_list": [{"order": n, "sigmas": [...]}, ...]}`` form,
        and the older ``fp_scheme="gmp"`` form ``{"MCSHs": {"0": {"groups":
        [...], "sigmas": [...]}, ...}}``; plus ``atom_gaussians`` {El: path to
        a .g file}, ``cutoff``, ``square``, ``solid_harmonics``, ``rs_setup``.
        """
        if not isinstance(fp_params, Mapping):
            raise InputError(f"got {type(fp_params).__name__}; expected a dict", "fp_params")
        known = {"MCSHs", "MCSHs_detailed_list", "atom_gaussians", "cutoff", "square", "solid_harmonics",
                 "rs_setup", "smooth_cutoff"}  # fmt: skip
        unknown = set(fp_params) - known
        if unknown:
            raise InputError(f"unknown key {sorted(unknown)[0]!r}; expected some of {sorted(known)}", "fp_params")
        if fp_scheme not in ("gmpordernorm", "gmp"):
            raise InputError(f"got {fp_scheme!r}; expected 'gmpordernorm' or 'gmp' for GMP", "fp_scheme")
        probes: list[tuple] = []
        if "MCSHs_detailed_list" in fp_params:
            for entry in fp_params["MCSHs_detailed_list"]:
                sig = entry.get("sigmas", [entry["sigma"]] if "sigma" in entry else None)
                if sig is None or "order" not in entry:
                    raise InputError(f"entry {entry!r}; expected keys 'order' and 'sigmas'", "MCSHs_detailed_list")
                if "group" in entry:
                    probes += [(entry["order"], entry["group"], s) for s in as_float_list(sig, "sigmas")]
                else:
                    probes += [(entry["order"], s) for s in as_float_list(sig, "sigmas")]
        elif "MCSHs" in fp_params:
            mcshs = fp_params["MCSHs"]
            if "orders" in mcshs:
                sig = as_float_list(mcshs.get("sigmas", []), "MCSHs.sigmas")
                probes = [(o, s) for o in np.atleast_1d(mcshs["orders"]).tolist() for s in sig]
            else:
                for key in sorted(mcshs, key=lambda k: int(k)):
                    spec = mcshs[key]
                    sig = as_float_list(spec.get("sigmas", []), f"MCSHs.{key}.sigmas")
                    groups = spec.get("groups", list(range(1, len(mcsh.groups(int(key))) + 1)))
                    probes += [(int(key), int(g), s) for g in groups for s in sig]
        else:
            raise InputError("missing 'MCSHs'; expected {'MCSHs': {'orders': [...], 'sigmas': [...]}}", "fp_params")
        if fp_scheme == "gmp":
            # (order, sigma) probes without a group get every group of their order, in the
            # original's column order (order, group, sigma): each run of one order is
            # expanded group-major, so {"orders", "sigmas"} equals the {"0": {"groups"...}} form.
            expanded: list[tuple] = []
            for _, run in itertools.groupby(probes, key=lambda p: (p[0], len(p))):
                run = list(run)
                if len(run[0]) == 3:
                    expanded += run
                else:
                    n_groups = len(mcsh.groups(run[0][0])) if run[0][0] in range(mcsh.MAX_ORDER + 1) else 1
                    expanded += [(o, g, s) for g in range(1, n_groups + 1) for o, s in run]
            probes = expanded
        densities = {el: dens.read_g_file(path) for el, path in fp_params.get("atom_gaussians", {}).items()}
        rs_setup = fp_params.get("rs_setup", {})
        args = dict(
            cutoff=fp_params.get("cutoff"),
            densities=densities,
            square=fp_params.get("square"),
            solid_harmonics=fp_params.get("solid_harmonics", True),
            smooth_cutoff=fp_params.get("smooth_cutoff"),
            probes=probes,
        )
        if rs_setup.get("setup") == "scale":
            args["rs_scale"] = rs_setup.get("scale_factor", 1.0)
        elif "rs" in rs_setup:
            args["rs"] = rs_setup["rs"]
        args.update(kwargs)
        return cls(**args)


def _from_params(fp_params, scheme, elements, cutoff_params) -> GMP:
    """The registry's builder: the original's defaults without ``fp_params``."""
    return GMP() if fp_params is None else GMP.from_amptorch(fp_params, fp_scheme=scheme)


def _fused(gmp: GMP, skin: float):
    """The calculator's fused path (solid harmonics only)."""
    from amptorch.descriptors.gmp_inference import GMPInference

    return GMPInference(gmp, skin) if GMPInference.supports(gmp) else None


def _twin(gmp: GMP, elements):
    """The torch twin for recompute-mode training (solid harmonics only; torch imported here)."""
    from amptorch.models.gmp_torch import GMPTorch

    return GMPTorch(gmp, elements)


register(DescriptorEntry("GMP", GMP, ("gmpordernorm", "gmp"), _from_params, any_element=True, fused=_fused,
                         twin=_twin, auto_params=gmp_fp_params))  # fmt: skip
