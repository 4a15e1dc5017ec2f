"""Behler-Parrinello Gaussian symmetry functions G2, G4, G5 (see ``src/gsf.cpp``).

Channels: G2 per neighbour element, G4/G5 per unordered neighbour-element
pair. Feature order = the original AmpTorch's: the python sort of the rows
(kind, Z1, Z2, eta, Rs or zeta, lambda), i.e. all G2 (by element, eta, Rs),
then G4, then G5 (by element pair, eta, zeta, lambda). Every centre element
has the same layout, so rows align across elements.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
from ase.data import chemical_symbols

from amptorch.descriptors.base import Descriptor, as_float_list, check_cutoff
from amptorch.descriptors.defaults import gsf_fp_params
from amptorch.descriptors.densities import element_number
from amptorch.descriptors.neighbors import NeighborEntries
from amptorch.descriptors.registry import DescriptorEntry, register
from amptorch.errors import InputError, where

CUTOFF_FNS = {"cosine": 1, "polynomial": 2}

Row = tuple[int, int, int, float, float, float]  # kind, Z1, Z2 (0 for G2), eta, Rs|zeta, lambda


class GaussianSF(Descriptor):
    """Gaussian symmetry functions.

    Args:
        elements: the element channels (symbols or Z), every element the
            structures may hold.
        g2: [(eta 1/Å^2, Rs Å), ...] radial functions.
        g4: [(eta 1/Å^2, zeta, lambda = +-1), ...] angular functions with the
            exp(-eta R_jk^2) fc(R_jk) factor.
        g5: same, without the R_jk factor.
        cutoff: Rc in Å.
        cutoff_fn: "cosine" 0.5 (1 + cos(pi R/Rc)) or "polynomial"
            1 + gamma x^(gamma+1) - (gamma+1) x^gamma, x = R/Rc.
        gamma: exponent of the polynomial cutoff.
        per_element: {centre element: {"g2": ..., "g4": ..., "g5": ...}} to
            give some centre elements their own parameters (same length).
    """

    def __init__(
        self,
        elements: Sequence[str | int],
        g2: Sequence[Sequence[float]] = (),
        g4: Sequence[Sequence[float]] = (),
        g5: Sequence[Sequence[float]] = (),
        cutoff: float = 6.0,
        cutoff_fn: str = "cosine",
        gamma: float = 2.0,
        per_element: Mapping | None = None,
    ):
        # The given order decides how a pair row is written, (Z_a, Z_b) with a
        # before b in ``elements``, and so the feature order (as the original).
        given = list(dict.fromkeys(element_number(e, "elements") for e in elements))
        if not given:
            raise InputError("elements: empty; expected the chemical symbols of the structures")
        zs = sorted(given)
        self.elements = [chemical_symbols[z] for z in given]
        self._given = given
        self._z = np.array(zs, dtype=np.int64)
        self._cutoff, self.gamma = check_cutoff(cutoff, cutoff_fn, gamma, CUTOFF_FNS)
        self.cutoff_fn = cutoff_fn
        default = self._rows(g2, g4, g5, "")
        self.rows: dict[int, list[Row]] = {z: default for z in zs}
        for key, spec in (per_element or {}).items():
            z = element_number(key, "per_element")
            if z not in self.rows:
                raise InputError(f"per_element: {chemical_symbols[z]} is not in elements {self.elements}")
            rows = self._rows(spec.get("g2", ()), spec.get("g4", ()), spec.get("g5", ()), f"[{key}]")
            if len(rows) != len(default):
                raise InputError(
                    f"per_element[{key}]: {len(rows)} functions; expected {len(default)} like the other "
                    "elements, so feature columns align"
                )
            self.rows[z] = rows
        if not default:
            raise InputError("g2, g4, g5: all empty; expected at least one symmetry function")
        self._kernel_tables = self._build_kernel_tables()
        self._args = {
            "elements": self.elements,
            "g2": [list(map(float, v)) for v in g2],
            "g4": [list(map(float, v)) for v in g4],
            "g5": [list(map(float, v)) for v in g5],
            "per_element": {
                chemical_symbols[element_number(k, "per_element")]: {
                    key: [list(map(float, v)) for v in spec.get(key, ())] for key in ("g2", "g4", "g5")
                }
                for k, spec in (per_element or {}).items()
            },
        }

    def _rows(self, g2, g4, g5, tag: str) -> list[Row]:
        rows: list[Row] = []
        for eta, rs in self.check_functions(g2, 2, f"g2{tag}"):
            rows += [(2, int(z), 0, eta, rs, 0.0) for z in self._given]
        for kind, params in ((4, g4), (5, g5)):
            for eta, zeta, lam in self.check_functions(params, kind, f"g{kind}{tag}"):
                rows += [(kind, int(a), int(b), eta, zeta, lam)
                         for a, b in itertools.combinations_with_replacement(self._given, 2)]  # fmt: skip
        return sorted(set(rows))

    @staticmethod
    def check_functions(values, kind: int, name: str) -> list[tuple[float, ...]]:
        """G2 (eta, Rs) or G4/G5 (eta, zeta, lambda) parameter tuples, checked (InputError naming ``name``)."""
        width = 2 if kind == 2 else 3
        out = []
        for v in values:
            v = tuple(as_float_list(v, name))
            if len(v) != width:
                raise InputError(f"got {v!r}; expected {width} numbers per function", name)
            if not v[0] >= 0:
                raise InputError(f"eta {v[0]!r}; expected eta >= 0 (1/Å^2)", name)
            if kind != 2 and (v[1] < 1 or v[2] not in (1.0, -1.0)):
                raise InputError(f"got zeta={v[1]}, lambda={v[2]}; expected zeta >= 1, lambda = +-1", name)
            out.append(v)
        return out

    @property
    def kernel_tables(self):
        """The kernel's functions (``amptorch._core.GSFTables``, read-only), built once.

        One row per element of ``elements`` sorted by Z (the centre species and the neighbour
        channels), one column per feature: ``kind`` (2, 4, 5), ``el1``, ``el2`` (channels), ``eta``,
        ``rs`` (G2: Rs; angular: zeta), ``lam``; and ``cutoff_kind``, ``cutoff``, ``cutoff_gamma``.
        """
        return self._kernel_tables

    def _build_kernel_tables(self):
        from amptorch import _core

        chan = {int(z): k for k, z in enumerate(self._z)}
        rows = [self.rows[int(z)] for z in self._z]

        def column(value, dtype=np.float64) -> np.ndarray:
            return np.array([[value(r) for r in rs] for rs in rows], dtype=dtype)

        return _core.GSFTables(
            kind=column(lambda r: r[0], np.int64),
            el1=column(lambda r: chan[r[1]] if r[0] == 2 else min(chan[r[1]], chan[r[2]]), np.int64),
            el2=column(lambda r: 0 if r[0] == 2 else max(chan[r[1]], chan[r[2]]), np.int64),
            eta=column(lambda r: r[3]),
            rs=column(lambda r: r[4]),
            lam=column(lambda r: r[5]),
            cutoff_kind=CUTOFF_FNS[self.cutoff_fn],
            cutoff=self._cutoff,
            cutoff_gamma=self.gamma,
        )

    # -- Descriptor interface ---------------------------------------------
    @property
    def cutoff(self) -> float:
        return self._cutoff

    @property
    def feature_names(self) -> list[str]:
        names = []
        for kind, a, b, eta, p, lam in self.rows[int(self._z[0])]:
            if kind == 2:
                names.append(f"G2_{chemical_symbols[a]}_eta{eta:g}_rs{p:g}")
            else:
                pair = f"{chemical_symbols[a]}-{chemical_symbols[b]}"
                names.append(f"G{kind}_{pair}_eta{eta:g}_zeta{p:g}_lam{lam:+g}")
        return names

    def settings(self) -> dict:
        return {
            "kind": "GaussianSF",
            **self._args,
            "cutoff": self._cutoff,
            "cutoff_fn": self.cutoff_fn,
            "gamma": self.gamma,
        }

    def check_elements(self, numbers: np.ndarray, index: int | None = None) -> None:
        missing = np.setdiff1d(numbers, self._z)
        if len(missing):
            raise InputError(
                f"{where(index)}numbers: element {chemical_symbols[int(missing[0])]} is not among the "
                f"symmetry functions' elements {self.elements}; expected only those"
            )

    def _kernel(self, numbers, nl: NeighborEntries, derivatives, strain, float32, n_threads, index):
        from amptorch import _core

        species = np.searchsorted(self._z, numbers)  # the kernel tables' rows (check_elements ran)
        return _core.gsf(
            self._kernel_tables, species, nl.estart, nl.ej, nl.ed, nl.epair, len(nl.pair_i),
            derivatives=derivatives, strain=strain, float32=float32, n_threads=n_threads,
        )  # fmt: skip

    # -- the original's parameter dicts -----------------------------------
    @classmethod
    def from_amptorch(cls, Gs: Mapping, elements: Sequence[str], cutoff_params: Mapping | None = None) -> GaussianSF:
        """GaussianSF from the original's ``fp_params`` (``Gs``), element list and ``cutoff_params``.

        ``Gs = {"default" or El: {"G2": {"etas", "rs_s"}, "G4": {"etas", "zetas",
        "gammas"}, "G5": {...}, "cutoff": Rc}}``; etas are in units of 1/Rc^2
        for G2 and G4 (divided by Rc^2 here) and in 1/Å^2 for G5 (as the original reads
        them), gammas are the lambdas.
        ``cutoff_params = {"cutoff_func": "cosine" | "polynomial", "gamma": 2}``.
        """
        return cls(elements, **cls.parse_amptorch(Gs, cutoff_params))

    @classmethod
    def parse_amptorch(cls, Gs: Mapping, cutoff_params: Mapping | None = None) -> dict:
        """The constructor's keyword arguments (all but ``elements``) from the original's ``fp_params``,
        every value checked; InputErrors name the key path (``fp_params.default.G2.etas``)."""
        if not isinstance(Gs, Mapping) or not Gs:
            raise InputError("expected {'default': {'G2': {...}, 'G4': {...}, 'cutoff': Rc}}", "fp_params")
        cutoff_params = dict(cutoff_params or {"cutoff_func": "cosine"})
        parsed = {key: cls._parse_element(spec, f"fp_params.{key}") for key, spec in Gs.items()}
        cutoffs = {rc for _, rc in parsed.values()}
        if len(cutoffs) != 1:
            raise InputError(f"cutoffs {sorted(cutoffs)} differ between elements; expected one cutoff", "fp_params")
        return {
            **parsed.get("default", next(iter(parsed.values())))[0],
            "cutoff": cutoffs.pop(),
            "cutoff_fn": str(cutoff_params.get("cutoff_func", "cosine")).lower(),
            "gamma": float(cutoff_params.get("gamma", 2.0)),
            "per_element": {k: v[0] for k, v in parsed.items() if k != "default"},
        }

    @classmethod
    def _parse_element(cls, spec: Mapping, path: str) -> tuple[dict, float]:
        """({"g2": [...], "g4": [...], "g5": [...]} with etas in 1/Å^2, cutoff Å) of one ``fp_params`` entry."""
        if not isinstance(spec, Mapping):
            raise InputError(f"got {type(spec).__name__}; expected {{'G2': {{...}}, 'cutoff': Rc}}", path)
        unknown = set(spec) - {"G2", "G4", "G5", "cutoff"}
        if unknown:
            raise InputError(f"unknown key {sorted(unknown)[0]!r}; expected G2, G4, G5, cutoff", path)
        if "cutoff" not in spec:
            raise InputError("missing; expected the cutoff radius in Å", f"{path}.cutoff")
        rc = as_float_list(spec["cutoff"], f"{path}.cutoff")[0]
        if not rc > 0:
            raise InputError(f"got {rc}; expected > 0 Å", f"{path}.cutoff")
        out: dict[str, list] = {"g2": [], "g4": [], "g5": []}
        for kind, keys in (("G2", ("etas", "rs_s")), ("G4", ("etas", "zetas", "gammas")),
                           ("G5", ("etas", "zetas", "gammas"))):  # fmt: skip
            if kind not in spec:
                continue
            g = spec[kind]
            missing = [k for k in keys if k not in g and k != "rs_s"] if isinstance(g, Mapping) else list(keys)
            if missing:
                raise InputError(f"missing {missing[0]!r}; expected a dict with keys {list(keys)}", f"{path}.{kind}")
            values = [as_float_list(g.get(k, [0.0]), f"{path}.{kind}.{k}") for k in keys]
            if kind != "G5":  # the original gives G2 and G4 etas in 1/Rc^2 and G5 etas in 1/Å^2
                values[0] = [e / rc**2 for e in values[0]]
            out[kind.lower()] = cls.check_functions(itertools.product(*values), int(kind[1]), f"{path}.{kind}")
        return out, rc


def _from_params(fp_params, scheme, elements, cutoff_params) -> GaussianSF | None:
    """The registry's builder: None (parameters checked) while the elements are not known."""
    if fp_params is None:
        raise InputError("missing; expected the Gs dict for fp_scheme 'gaussian' (or 'auto')")
    args = GaussianSF.parse_amptorch(fp_params, cutoff_params)
    return None if elements is None else GaussianSF(elements, **args)


def _twin(gsf: GaussianSF, elements):
    """The torch twin for recompute-mode training (torch imported here)."""
    from amptorch.models.gsf_torch import GSFTorch

    return GSFTorch(gsf)


register(DescriptorEntry("GaussianSF", GaussianSF, ("gaussian",), _from_params, needs_elements=True, twin=_twin,
                         auto_params=gsf_fp_params))  # fmt: skip
