"""GMP features, then forces and virial from dE/dfeatures: the calculator's fast path.

Training needs d features / d positions as arrays (the loss on forces is
differentiated again w.r.t. the network), so ``GMP.compute`` writes them:
(P, F, 3) per structure. A calculator needs only the forces, and

    F = -dE/dr = -sum_i sum_p (dE/dG_ip) dG_ip/dr

is one more pass over the neighbour pairs once dE/dG is known. So the
calculator runs:

    feats = kernel.features(numbers, positions, cell, pbc)       # (n, F)
    dEdG = autograd of the network's energy w.r.t. feats           # (n, F)
    forces, virial = kernel.forces(dEdG)                           # (n, 3), (3, 3)

with a half neighbour list (each pair once) kept between calls with a Verlet
skin (``VerletPairs``). The C++ side is ``src/gmp_infer.cpp``; it shares its
radial and angular terms with the training kernel (``src/gmp_terms.hpp``),
and the tests check the two agree to round-off.

Only solid-harmonic GMP (``solid_harmonics=True``, the default and the
original's) has this path; ``GMPInference.supports(gmp)`` says whether a
descriptor does.
"""

from __future__ import annotations

import numpy as np

from amptorch.descriptors.base import structure_arrays
from amptorch.descriptors.gmp import GMP
from amptorch.descriptors.neighbors import MIN_DISTANCE, VerletPairs, too_close
from amptorch.errors import InputError

__all__ = ["GMPInference"]


class GMPInference:
    """Two-pass GMP kernel with a reused neighbour list.

    Args:
        gmp: a GMP descriptor with ``solid_harmonics=True``.
        skin: Verlet skin (Å) of the half neighbour list; 0 rebuilds it at every call.
        tabulate: take each species' radial sums R_n(r) from quintic Hermite
            splines (built at the first structure with those species, from exact
            values and derivatives at the nodes; grid refined until the error is
            below 1e-11 of each function's largest value) instead of ~25 exp
            calls per pair; features then agree with ``GMP.compute`` to ~1e-11
            relative, and forces are the exact derivatives of the tabulated
            energy. False: exact sums (round-off agreement); the features pass
            then takes ~1.6x longer (2.6 vs 1.6 ms for 108 Cu atoms).

    Call :meth:`features` then :meth:`forces` for the same structure; the
    kernel keeps what the second pass needs (about 2.4 MB for 108 Cu atoms
    at 7 Å) between them.
    """

    def __init__(self, gmp: GMP, skin: float = 0.5, tabulate: bool = True):
        from amptorch import _core

        if not self.supports(gmp):
            raise InputError("GMPInference: needs a GMP descriptor with solid_harmonics=True")
        self.descriptor = gmp
        self.pairs = VerletPairs(gmp.cutoff, skin)
        self._kernel = _core.GMPInference(gmp.kernel_tables, tabulate=bool(tabulate))
        self._numbers: np.ndarray | None = None
        self._densities: tuple = ()

    @property
    def table_spacing(self) -> float:
        """Grid spacing (Å) of the radial splines in use, 0.0 for exact sums (set by the first ``features``)."""
        return float(self._kernel.table_spacing)

    @staticmethod
    def supports(descriptor) -> bool:
        """True for a GMP descriptor on solid harmonics (the only kind with the fused path)."""
        return isinstance(descriptor, GMP) and descriptor.solid_harmonics

    def features(self, atoms, n_threads: int = 0, index: int | None = None) -> np.ndarray:
        """GMP features (n, F) float64 of an ase.Atoms, equal to ``GMP.compute(atoms).features``.

        Raises:
            InputError: a bad structure, an element without a density, or two
                atoms closer than 0.1 Å (same messages as ``GMP.compute``).
        """
        numbers, positions, cell, pbc = structure_arrays(atoms, index)
        if self._numbers is None or not np.array_equal(numbers, self._numbers):
            self.descriptor.check_elements(numbers, index)
            self._densities = self.descriptor.species_densities(numbers)
            self._numbers = numbers.copy()
        pi, pj, shift = self.pairs.update(positions, cell, pbc, index)
        species, gstart, gB, gbeta = self._densities
        feats, k, r2 = self._kernel.features(
            species, gstart, gB, gbeta, np.ascontiguousarray(positions), np.ascontiguousarray(cell),
            pi, pj, shift, n_threads,
        )  # fmt: skip
        if k >= 0 and r2 < MIN_DISTANCE**2:
            raise too_close(int(pi[k]), int(pj[k]), float(r2), index)
        return feats

    def forces(self, dEdG: np.ndarray, n_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Forces (n, 3) eV/Å and virial dE/dstrain (3, 3) eV of the last ``features`` structure.

        Args:
            dEdG: (n, F) dE/dfeatures, eV per feature unit.

        The stress (ASE sign) is the symmetrized virial over the cell volume.
        """
        if self._numbers is None:
            raise InputError("GMPInference.forces: call features(atoms) first")
        dEdG = np.ascontiguousarray(dEdG, dtype=np.float64)
        expected = (len(self._numbers), self.descriptor.length)
        if dEdG.shape != expected:
            raise InputError(f"dEdG: shape {dEdG.shape}; expected {expected} (atoms, features) of the last structure")
        return self._kernel.forces(dEdG, n_threads)
