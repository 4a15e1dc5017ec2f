"""The original's ``from amptorch.descriptor.Gaussian import Gaussian, GaussianDescriptorSet, GDS``.

* ``Gaussian(Gs, elements, cutoff_func="cosine", gamma=None)`` is our
  :class:`amptorch.descriptors.GaussianSF`, built by the same ``fp_params``
  reader the trainer uses (``GaussianSF.parse_amptorch``); ``Gs`` may also be
  a ``GaussianDescriptorSet``.
* ``GaussianDescriptorSet`` collects symmetry functions one by one
  (``add_g2``, ``add_g4``, ``add_g5``), zipped (``batch_add_descriptors``) or
  from a ``Gs`` dict (``process_combinatorial_Gs``), as the original.
  ``to_descriptor()`` gives the GaussianSF it describes; it is accepted as
  ``config["dataset"]["fp_params"]`` (the trainer calls ``to_descriptor``).

Both expose the original's ``descriptor_setup`` ({element: rows (kind, Z1,
Z2, cutoff, eta 1/Å^2, Rs or zeta, lambda)}) and ``descriptor_setup_hash`` (a
hash of those rows and the cutoff function: equal for equal functions, but
not the original's md5 value).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
from ase.data import chemical_symbols

from amptorch.descriptors import GaussianSF
from amptorch.descriptors.densities import element_number
from amptorch.errors import InputError


def _setup_hash(setup: Mapping[str, np.ndarray], cutoff_fn: str, gamma: float) -> str:
    """One hash of ``descriptor_setup`` rows and the cutoff function (shared by Gaussian and the set)."""
    h = hashlib.sha256(f"{cutoff_fn}:{gamma if cutoff_fn == 'polynomial' else ''}".encode())
    for element in sorted(setup):
        h.update(element.encode())
        h.update(np.ascontiguousarray(setup[element], dtype=np.float64).tobytes())
    return h.hexdigest()


def _cutoff_args(cutoff_params: Mapping | None, gamma: float | None = None) -> tuple[str, float]:
    params = {str(k).lower(): v for k, v in dict(cutoff_params or {}).items()}
    fn = str(params.get("cutoff_func", "cosine")).lower()
    g = params.get("gamma", gamma)
    return fn, float(2.0 if g is None else g)


class GaussianDescriptorSet:
    """The original's explicit symmetry-function set (rows per centre element).

    Args:
        elements: the element channels, in the order pair rows are written.
        cutoff: Rc (Å) of the functions added without their own cutoff.
        cutoff_params: {"cutoff_func": "cosine" | "polynomial", "gamma": ...}.
        default_interactions: accepted for the original's signature; unused there too.

    G2 and G4 etas are given in units of 1/Rc^2 (divided by Rc^2 here), G5
    etas in 1/Å^2, as the original.
    """

    def __init__(self, elements: Sequence[str], cutoff: float = 6.5, cutoff_params: Mapping | None = None,
                 default_interactions: bool = False):  # fmt: skip
        self.elements = [chemical_symbols[element_number(e, "elements")] for e in elements]
        self.cutoff = float(cutoff)
        self.cutoff_fn, self.gamma = _cutoff_args(cutoff_params or {"cutoff_func": "cosine"})
        self.interactions: dict[str, dict[str, set]] = {e: {"G2": set(), "G4": set(), "G5": set()}
                                                        for e in self.elements}  # fmt: skip
        self.descriptor_setup: dict[str, np.ndarray] | None = None
        self.descriptor_setup_hash: str | None = None

    def _z(self, element: str) -> int:
        if element not in self.elements:
            raise InputError(f"{element!r} is not in {self.elements}", "GaussianDescriptorSet.elements")
        return element_number(element, "elements")

    def _add(self, kind: int, centre: str, a: str, b: str | None, eta: float, p: float, lam: float,
             cutoff: float | None, update: bool) -> set:  # fmt: skip
        rc = float(cutoff or self.cutoff)
        eta = float(eta) if kind == 5 else float(eta) / rc**2
        row = (kind, self._z(a), 0 if b is None else self._z(b), rc, eta, float(p), float(lam))
        self._z(centre)
        self.interactions[centre][f"G{kind}"].add(row)
        if update:
            self.update()
        return self.interactions[centre][f"G{kind}"]

    def add_g2(self, element_i, element_j, eta=3.0, rs=0.0, cutoff=None, update=True) -> set:
        return self._add(2, element_i, element_j, None, eta, rs, 0.0, cutoff, update)

    def add_g4(self, element_i, element_j, element_k, eta=0.005, zeta=1.0, gamma=1.0, cutoff=None,
               update=True) -> set:  # fmt: skip
        return self._add(4, element_i, element_j, element_k, eta, zeta, gamma, cutoff, update)

    def add_g5(self, element_i, element_j, element_k, eta=0.005, zeta=1.0, gamma=1.0, cutoff=None,
               update=True) -> set:  # fmt: skip
        return self._add(5, element_i, element_j, element_k, eta, zeta, gamma, cutoff, update)

    def _pairs(self):
        return [(a, b) for j, a in enumerate(self.elements) for b in self.elements[j:]]

    def batch_add_descriptors(self, number, param1s, param2s, param3s, cutoff=None, update=True) -> None:
        """Functions of kind ``number`` (2, 4, 5) for the zipped parameters, on every element (pair)."""
        for centre in self.elements:
            if number == 2:
                for eta, rs in zip(param1s, param2s, strict=True):
                    for a in self.elements:
                        self.add_g2(centre, a, eta, rs, cutoff, False)
            else:
                add = self.add_g4 if number == 4 else self.add_g5
                for eta, zeta, lam in zip(param1s, param2s, param3s, strict=True):
                    for a, b in self._pairs():
                        add(centre, a, b, eta, zeta, lam, cutoff, False)
        if update:
            self.update()

    def process_combinatorial_Gs(self, Gs: Mapping) -> None:
        """Add every combination of a ``Gs`` dict's parameters (``{"default" or El: {...}}``)."""
        for centre in self.elements:
            spec = Gs.get(centre, Gs.get("default"))
            if spec is None:
                raise InputError(f"no entry for {centre} and no 'default'", "Gs")
            rc = spec["cutoff"]
            if "G2" in spec:
                for eta in spec["G2"]["etas"]:
                    for rs in spec["G2"].get("rs_s", [0.0]):
                        for a in self.elements:
                            self.add_g2(centre, a, eta, rs, rc, False)
            for kind, add in (("G4", self.add_g4), ("G5", self.add_g5)):
                if kind in spec:
                    g = spec[kind]
                    for eta in g["etas"]:
                        for zeta in g["zetas"]:
                            for lam in g["gammas"]:
                                for a, b in self._pairs():
                                    add(centre, a, b, eta, zeta, lam, rc, False)
        self.update()

    def update(self) -> None:
        rows = {e: sorted(r for kind in ("G2", "G4", "G5") for r in self.interactions[e][kind])
                for e in self.elements}  # fmt: skip
        self.descriptor_setup = {e: np.array(r, dtype=np.float64).reshape(-1, 7) for e, r in rows.items()}
        self.descriptor_setup_hash = _setup_hash(self.descriptor_setup, self.cutoff_fn, self.gamma)

    def to_descriptor(self) -> GaussianSF:
        """The :class:`GaussianSF` with these functions.

        Our GaussianSF gives each centre element one list of functions applied
        to every neighbour element (pair) and one cutoff; a set outside that
        (a function added for some pairs only, several cutoffs) is an InputError.
        """
        self.update()
        rows = [r for e in self.elements for r in self.descriptor_setup[e].tolist()]
        if not rows:
            raise InputError("no symmetry functions; add some first", "GaussianDescriptorSet")
        cutoffs = sorted({r[3] for r in rows})
        if len(cutoffs) != 1:
            raise InputError(f"cutoffs {cutoffs} differ; expected one cutoff", "GaussianDescriptorSet")

        def params(element: str) -> dict:
            setup = self.descriptor_setup[element].tolist()
            return {f"g{k}": sorted({tuple(r[4:6]) if k == 2 else tuple(r[4:7]) for r in setup if r[0] == k})
                    for k in (2, 4, 5)}  # fmt: skip

        first = params(self.elements[0])
        per_element = {e: params(e) for e in self.elements[1:] if params(e) != first}
        desc = GaussianSF(self.elements, **first, cutoff=cutoffs[0], cutoff_fn=self.cutoff_fn, gamma=self.gamma,
                          per_element=per_element)  # fmt: skip
        if _setup_of(desc) != {e: [tuple(r) for r in self.descriptor_setup[e].tolist()] for e in self.elements}:
            raise InputError(
                "some functions are not on every neighbour element (pair); our GaussianSF applies each "
                "function to all of them", "GaussianDescriptorSet",
            )  # fmt: skip
        return desc

    def __eq__(self, other) -> bool:
        return isinstance(other, GaussianDescriptorSet) and self.descriptor_setup_hash == other.descriptor_setup_hash

    def __hash__(self) -> int:
        return hash(self.descriptor_setup_hash)

    def __repr__(self) -> str:
        counts = ", ".join(f"{e}: {{#G2: {len(i['G2'])}, #G4: {len(i['G4'])}, #G5: {len(i['G5'])}}}"
                           for e, i in self.interactions.items())  # fmt: skip
        return f"GaussianDescriptorSet({counts})"


def _setup_of(desc: GaussianSF) -> dict[str, list[tuple]]:
    """The original's rows (kind, Z1, Z2, cutoff, eta, Rs|zeta, lambda) of a GaussianSF, per centre element."""
    return {chemical_symbols[z]: [(float(k), float(a), float(b), desc.cutoff, eta, p, lam)
                                  for k, a, b, eta, p, lam in rows]
            for z, rows in desc.rows.items()}  # fmt: skip


class Gaussian(GaussianSF):
    """Our :class:`GaussianSF` from the original's ``Gaussian(Gs, elements, cutoff_func, gamma)``.

    ``Gs`` is the ``fp_params`` dict (read by :meth:`GaussianSF.parse_amptorch`,
    as the trainer reads it) or a :class:`GaussianDescriptorSet`.
    """

    descriptor_type = "Gaussian"

    def __init__(self, Gs, elements: Sequence[str], cutoff_func: str = "cosine", gamma: float | None = None):  # noqa: N803
        if isinstance(Gs, GaussianDescriptorSet):
            self.__dict__.update(Gs.to_descriptor().__dict__)  # the set's one GaussianSF, every field
        else:
            fn, g = _cutoff_args({"cutoff_func": cutoff_func}, gamma)
            super().__init__(elements, **GaussianSF.parse_amptorch(Gs, {"cutoff_func": fn, "gamma": g}))
        self.Gs = Gs

    @property
    def descriptor_setup(self) -> dict[str, np.ndarray]:
        """{centre element: (n_features, 7) rows (kind, Z1, Z2, cutoff, eta 1/Å^2, Rs|zeta, lambda)}."""
        return {e: np.array(rows, dtype=np.float64) for e, rows in _setup_of(self).items()}

    @property
    def descriptor_setup_hash(self) -> str:
        return _setup_hash(self.descriptor_setup, self.cutoff_fn, self.gamma)

    def to_descriptor(self) -> GaussianSF:
        return self


GDS = GaussianDescriptorSet  # the original's short name

__all__ = ["GDS", "Gaussian", "GaussianDescriptorSet"]
