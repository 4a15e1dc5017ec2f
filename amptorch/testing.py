"""Physics test kit: structures, finite differences and checks for descriptors, models and calculators.

For whoever adds a descriptor or a model (and for amptorch's own tests)::

    from amptorch import testing as kit
    from amptorch.calculator import AmpTorchCalculator

    atoms = kit.fcc_bulk(substitute={1: "Pd"}, rattle=0.1)   # rattled 4-atom CuPd cell
    potential = kit.make_potential("gmp_smooth", "bpnn", ["Cu", "Pd"], fit_to=[atoms])  # untrained
    calc = AmpTorchCalculator(potential)
    kit.check_forces_fd(calc, atoms)        # forces = -dE/dr (central differences)
    kit.check_stress_fd(calc, atoms)        # stress = (1/V) dE/d(strain)
    kit.check_invariance(calc, atoms)       # rotation, translation, permutation, supercell, images
    drift = kit.nve_drift(calc, kit.fcc_bulk(repeat=(2, 2, 2), rattle=0.0), steps=200)  # eV/atom

    @pytest.mark.parametrize("desc, model, dtype", kit.combinations())
    def test_my_forces(desc, model, dtype): ...

Units: positions and cells in Å, energies in eV, forces in eV/Å, stress in
eV/Å^3 (ASE's sign: positive under tension; Voigt order xx, yy, zz, yz, xz,
xy). Strain is dimensionless.

The ``check_*`` functions raise AssertionError with a message that names the
quantity, the error and the tolerance, so they work inside any test
framework; they return the measured error. Energy functions (``EnergyFn``)
map a list of structures to their energies (eV), so a model can evaluate all
the displaced structures of a finite difference in one batch; wherever one is
taken an ase Calculator works too.

Importing it loads nothing beyond ``import amptorch`` (numpy, ase and the
descriptors); models and the potential are imported inside the functions
that use them, and skorch and ``amptorch.train`` never.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch
    from ase import Atoms
    from ase.calculators.calculator import BaseCalculator

    from amptorch.descriptors import Descriptor, FeatureRecord
    from amptorch.models import AtomisticModel
    from amptorch.potential import TrainedPotential

EnergyFn = Callable[[Sequence["Atoms"]], Sequence[float]]
"""Energies (eV) of a list of structures, in order."""
FeatureFn = Callable[["Atoms"], np.ndarray]
"""Per-atom features (n, F) of a structure."""
RattleMethod = Literal["numpy", "ase"]
ALLOY_ELEMENTS = ("Cu", "Ni", "Co", "Fe", "Cr", "Mn", "Pd", "Pt", "Ag", "Au")
"""The ten elements of :func:`fcc_alloy`."""
TRANSFORMS = ("rotation", "translation", "permutation", "supercell", "images")
"""The symmetry operations :func:`check_invariance` applies (the last two only to periodic cells)."""


# -- structures ---------------------------------------------------------------------------------------
def rattle_positions(atoms: Atoms, stdev: float, seed: int, method: RattleMethod = "numpy") -> Atoms:
    """Add normal noise of standard deviation ``stdev`` (Å) to every position, in place; returns ``atoms``.

    ``method``: "numpy" draws from ``np.random.default_rng(seed)``; "ase" calls
    ``Atoms.rattle(stdev, seed=seed)`` (numpy's legacy RandomState). The two give
    different (each deterministic) displacements. ``stdev`` 0: unchanged.
    """
    if not stdev:
        return atoms
    if method == "ase":
        atoms.rattle(stdev, seed=seed)
    elif method == "numpy":
        atoms.positions += np.random.default_rng(seed).normal(0, stdev, atoms.positions.shape)
    else:
        raise ValueError(f"method: got {method!r}; expected 'numpy' or 'ase'")
    return atoms


def _substitute(atoms: Atoms, substitute: Mapping[int, str | int] | None) -> None:
    from ase.data import atomic_numbers

    for index, element in (substitute or {}).items():
        atoms.numbers[index] = atomic_numbers[element] if isinstance(element, str) else int(element)


def fcc_bulk(
    symbol: str = "Cu",
    a: float = 3.61,
    repeat: tuple[int, int, int] = (1, 1, 1),
    *,
    cubic: bool = True,
    substitute: Mapping[int, str | int] | None = None,
    deform: np.ndarray | Sequence[Sequence[float]] | None = None,
    rattle: float = 0.05,
    seed: int = 0,
    method: RattleMethod = "numpy",
) -> Atoms:
    """A small fully periodic fcc crystal, rattled: the bulk test case.

    Args:
        symbol, a: element and lattice constant (Å).
        repeat: copies of the cell along its three vectors.
        cubic: the 4-atom conventional cell (else the 1-atom primitive one).
        substitute: {atom index: element} replacements (an alloy site, a second element).
        deform: (3, 3) matrix M; the cell becomes cell @ M, atoms scaled with it.
        rattle, seed, method: see :func:`rattle_positions` (Å).

    Returns: ase.Atoms with ``len = (4 if cubic else 1) * prod(repeat)``, pbc True.
    """
    from ase.build import bulk

    atoms = bulk(symbol, "fcc", a=a, cubic=cubic).repeat(repeat)
    _substitute(atoms, substitute)
    if deform is not None:
        atoms.set_cell(atoms.cell.array @ np.asarray(deform, dtype=np.float64), scale_atoms=True)
    return rattle_positions(atoms, rattle, seed, method)


def fcc111_slab(
    symbol: str = "Cu",
    size: tuple[int, int, int] = (2, 2, 3),
    vacuum: float = 6.0,
    *,
    substitute: Mapping[int, str | int] | None = None,
    adsorbate: tuple[str, Sequence[float]] | None = None,
    rattle: float = 0.05,
    seed: int = 0,
    method: RattleMethod = "numpy",
) -> Atoms:
    """An fcc(111) slab, periodic in x and y only (pbc True, True, False): the semi-periodic test case.

    Args:
        symbol, size, vacuum: as ``ase.build.fcc111`` (vacuum in Å on each side).
        substitute: {atom index: element} replacements (before the adsorbate is added).
        adsorbate: (element, offset in Å from the last slab atom), appended as the last atom.
        rattle, seed, method: see :func:`rattle_positions` (Å).

    ``info`` is cleared (ase's adsorption-site metadata no longer fits a rattled slab).
    """
    from ase import Atoms
    from ase.build import fcc111

    atoms = fcc111(symbol, size=size, vacuum=vacuum)
    _substitute(atoms, substitute)
    if adsorbate is not None:
        element, offset = adsorbate
        atoms += Atoms(element, positions=[atoms.positions[-1] + np.asarray(offset, dtype=np.float64)])
    atoms.pbc = (True, True, False)
    atoms.info.clear()
    return rattle_positions(atoms, rattle, seed, method)


def isolated_molecule(
    name: str = "CH3CH2OH",
    *,
    vacuum: float | None = None,
    rattle: float = 0.03,
    seed: int = 1,
    method: RattleMethod = "numpy",
) -> Atoms:
    """A molecule from ``ase.build.molecule``, pbc False: the isolated test case.

    ``vacuum`` (Å): centre it in a box with that much space on each side (still not
    periodic); None leaves it without a cell. rattle, seed, method: see :func:`rattle_positions`.
    """
    from ase.build import molecule

    atoms = molecule(name)
    if vacuum is not None:
        atoms.center(vacuum=vacuum)
    return rattle_positions(atoms, rattle, seed, method)


def fcc_alloy(
    elements: Sequence[str] = ALLOY_ELEMENTS,
    a: float = 3.7,
    repeat: tuple[int, int, int] = (1, 2, 2),
    *,
    rattle: float = 0.06,
    seed: int = 4,
) -> Atoms:
    """A rattled multi-element fcc alloy (default: 16 atoms of ten elements, each at least once).

    Sites get ``elements`` in a random order (cycled), then positions get normal
    noise of ``rattle`` Å, both from ``np.random.default_rng(seed)``.
    """
    from ase.build import bulk

    atoms = bulk(elements[0], "fcc", a=a, cubic=True).repeat(repeat)
    rng = np.random.default_rng(seed)
    atoms.set_chemical_symbols([elements[k % len(elements)] for k in rng.permutation(len(atoms))])
    atoms.positions += rng.normal(0, rattle, atoms.positions.shape)
    return atoms


STRUCTURES: dict[str, Callable[[], Atoms]] = {
    "bulk": fcc_bulk,
    "slab": fcc111_slab,
    "molecule": isolated_molecule,
    "alloy": fcc_alloy,
}
"""One structure of each kind (the makers' defaults), for ``pytest.mark.parametrize``."""


def label_emt(atoms: Atoms) -> Atoms:
    """``atoms`` with its EMT energy (eV), forces (eV/Å) and, for a fully periodic cell, stress
    (eV/Å^3) frozen on a SinglePointCalculator, as ``ase.io.read`` gives labelled frames."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def make_cu_emt(
    n: int = 240,
    seed: int = 0,
    a: float = 3.6,
    big_every: int = 3,
    vacancy_every: int = 5,
    rattle: float | None = None,
    vacancy_site: int | None = None,
) -> list[Atoms]:
    """``n`` EMT-labelled fcc Cu cells, deterministic for a seed (the demo's and the tests' data).

    Each is a 2x2x2 conventional cell (32 atoms; every ``big_every``-th a 3x3x3
    one, 108 atoms; 0: none) of lattice constant ``a`` (Å), with one atom
    removed in every ``vacancy_every``-th (0: none; the atom ``vacancy_site``,
    or a random one when None), strained by up to 2 % and rattled by a normal
    of ``rattle`` Å (None: a width drawn in 0.03–0.12 Å per cell). Labels by
    :func:`label_emt`.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        reps = (3, 3, 3) if big_every and k % big_every == 0 else (2, 2, 2)
        atoms = fcc_bulk("Cu", a, reps, rattle=0.0)
        if vacancy_every and k % vacancy_every == 0:
            del atoms[int(rng.integers(len(atoms))) if vacancy_site is None else vacancy_site]
        strain = np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        width = rng.uniform(0.03, 0.12) if rattle is None else rattle
        atoms.positions += rng.normal(0.0, width, atoms.positions.shape)
        frames.append(label_emt(atoms))
    return frames


# -- energy and feature functions ------------------------------------------------------------------------
def is_calculator(obj: Any) -> bool:
    """Whether ``obj`` is an ase Calculator (anything with ``get_property`` and ``calculate``)."""
    from ase.calculators.calculator import BaseCalculator

    return isinstance(obj, BaseCalculator) or (hasattr(obj, "get_property") and hasattr(obj, "calculate"))


def with_calc(atoms: Atoms, calc: BaseCalculator) -> Atoms:
    """A copy of ``atoms`` with ``calc`` attached (the original keeps its own calculator)."""
    out = atoms.copy()
    out.calc = calc
    return out


def energy_function(calc_or_fn: BaseCalculator | EnergyFn) -> EnergyFn:
    """An :data:`EnergyFn`: a callable is returned as it is; an ase Calculator is wrapped so that each
    structure, in order, is evaluated by it (on a copy, so the structures passed are not modified)."""
    if not is_calculator(calc_or_fn):
        if not callable(calc_or_fn):
            raise TypeError(f"got {type(calc_or_fn).__name__}; expected an ase Calculator or an energy function")
        return calc_or_fn
    calc = calc_or_fn

    def energies(structures: Sequence[Atoms]) -> list[float]:
        return [with_calc(s, calc).get_potential_energy() for s in structures]

    return energies


def feature_function(desc_or_fn: Descriptor | FeatureFn) -> FeatureFn:
    """A :data:`FeatureFn`: a descriptor (anything with ``compute``) gives ``compute(atoms,
    derivatives=False).features``; a callable is returned as it is."""
    if hasattr(desc_or_fn, "compute"):
        desc = desc_or_fn
        return lambda atoms: desc.compute(atoms, derivatives=False).features
    return desc_or_fn


# -- strain and finite differences -------------------------------------------------------------------
def strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    """A copy deformed homogeneously: r -> r (I + eps), cell -> cell (I + eps) (rows are vectors).

    ``eps`` (3, 3), dimensionless; a symmetric one is a pure strain (no rotation).
    """
    m = np.eye(3) + eps
    out = atoms.copy()
    out.positions = atoms.positions @ m
    out.cell = atoms.cell.array @ m
    return out


def fd_forces(
    energy_fn: EnergyFn | BaseCalculator, atoms: Atoms, h: float = 1e-5, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Forces -dE/dr (eV/Å) by central differences with step ``h`` (Å), shape (len(indices), 3).

    ``indices``: the atoms moved (default all). All 6 * len(indices) displaced
    structures go to ``energy_fn`` in one call, ordered atom, axis, (+h, -h).
    """
    energies = energy_function(energy_fn)
    idx = list(range(len(atoms))) if indices is None else list(indices)
    structures = []
    for i in idx:
        for c in range(3):
            for sign in (1.0, -1.0):
                moved = atoms.copy()
                moved.positions[i, c] += sign * h
                structures.append(moved)
    e = np.asarray(energies(structures), dtype=np.float64).reshape(len(idx), 3, 2)
    return -(e[..., 0] - e[..., 1]) / (2 * h)


def fd_stress(energy_fn: EnergyFn | BaseCalculator, atoms: Atoms, h: float = 1e-5) -> np.ndarray:
    """Stress (1/V) dE/d(symmetric strain) (eV/Å^3) by central differences with strain step ``h``.

    Shape (6,), Voigt xx, yy, zz, yz, xz, xy, ASE's sign (a compressed cell has
    negative diagonal stress). The 12 strained structures (:func:`strained`) go
    to ``energy_fn`` in one call. ``atoms`` must be periodic along all three axes.
    """
    from amptorch.descriptors.record import VOIGT_COLS, VOIGT_ROWS

    energies = energy_function(energy_fn)
    structures = []
    for a, b in zip(VOIGT_ROWS, VOIGT_COLS, strict=True):
        for sign in (1.0, -1.0):
            eps = np.zeros((3, 3))
            eps[a, b] += 0.5 * sign * h
            eps[b, a] += 0.5 * sign * h
            structures.append(strained(atoms, eps))
    e = np.asarray(energies(structures), dtype=np.float64).reshape(6, 2)
    return (e[:, 0] - e[:, 1]) / (2 * h) / atoms.get_volume()


def fd_feature_positions(
    features_fn: Descriptor | FeatureFn, atoms: Atoms, movers: Sequence[int], h: float = 1e-5
) -> np.ndarray:
    """d features / d r_k by central differences (step ``h`` Å), shape (n, F, len(movers), 3) (1/Å
    times the features' unit): [i, f, m, c] is the derivative of feature f of atom i with respect
    to coordinate c of atom movers[m]. Compare with ``FeatureRecord.dense_dfeat()[:, :, movers]``."""
    features = feature_function(features_fn)
    out = []
    for k in movers:
        cols = []
        for a in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[k, a] += h
            minus.positions[k, a] -= h
            cols.append((features(plus) - features(minus)) / (2 * h))
        out.append(np.stack(cols, axis=-1))
    return np.stack(out, axis=2)


def fd_feature_strain(features_fn: Descriptor | FeatureFn, atoms: Atoms, h: float = 1e-5) -> np.ndarray:
    """d features / d eps_ab by central differences (strain step ``h``), shape (n, F, 3, 3), for each
    of the nine components of a general (not symmetrized) deformation (:func:`strained`). Compare
    with ``FeatureRecord.dfeat_strain``."""
    features = feature_function(features_fn)
    out = np.zeros(features(atoms).shape + (3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            out[..., a, b] = (features(strained(atoms, e)) - features(strained(atoms, -e))) / (2 * h)
    return out


# -- error measures ---------------------------------------------------------------------------------------
def max_rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Feature derivatives: max |analytic - numeric| per feature (axis 1), relative to that feature's
    max |analytic derivative|; the largest over features. Shapes (n, F, ...) both."""
    diff = np.moveaxis(np.abs(analytic - numeric), 1, 0).reshape(analytic.shape[1], -1).max(axis=1)
    scale = np.moveaxis(np.abs(analytic), 1, 0).reshape(analytic.shape[1], -1).max(axis=1)
    return float((diff / np.maximum(scale, 1e-300)).max())


def rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected| (both as float64; any equal shapes)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def assert_close_rel(reference: np.ndarray, value: np.ndarray, what: str = "values", rtol: float = 1e-10) -> None:
    """AssertionError unless the shapes are equal and max |reference - value| <= rtol * max |reference|."""
    reference, value = np.asarray(reference), np.asarray(value)
    assert reference.shape == value.shape, f"{what}: shapes {reference.shape} vs {value.shape}"
    scale = max(np.abs(reference).max(), 1e-300)
    diff = np.abs(reference - value).max()
    assert diff <= rtol * scale, f"{what}: differ by {diff / scale:.2e} (relative), more than rtol {rtol:.1e}"


# -- checks ------------------------------------------------------------------------------------------------
def _check_fd(analytic: np.ndarray, numeric: np.ndarray, rtol: float, what: str) -> float:
    analytic = np.asarray(analytic, dtype=np.float64)
    if not np.abs(numeric).max() > 0:
        raise AssertionError(f"{what}: the finite differences are all zero, nothing to compare (rattle the structure)")
    err = rel_error(analytic, numeric)
    if not err < rtol:
        k = np.unravel_index(np.argmax(np.abs(analytic - numeric)), analytic.shape)
        raise AssertionError(
            f"{what}: relative error {err:.3e}, not below rtol {rtol:.1e} (largest at {tuple(map(int, k))}: "
            f"analytic {analytic[k]:.10g}, finite differences {numeric[k]:.10g})"
        )
    return err


def check_forces_fd(
    calc: BaseCalculator | EnergyFn,
    atoms: Atoms,
    rtol: float = 1e-6,
    *,
    h: float = 1e-5,
    indices: Sequence[int] | None = None,
    forces: np.ndarray | None = None,
) -> float:
    """Assert that forces equal -dE/dr by central differences; returns the relative error.

    Args:
        calc: an ase Calculator, or an :data:`EnergyFn` (then ``forces`` is required).
        atoms: the structure (not modified).
        rtol: bound on max |F - F_fd| / max |F_fd| over the checked atoms (strict <).
        h: position step (Å).
        indices: the atoms checked (default all).
        forces: (n, 3) analytic forces (eV/Å) of all atoms; default ``calc``'s.
    """
    if forces is None:
        if not is_calculator(calc):
            raise TypeError("forces: required when an energy function is given instead of a calculator")
        forces = with_calc(atoms, calc).get_forces()
    idx = list(range(len(atoms))) if indices is None else list(indices)
    numeric = fd_forces(calc, atoms, h, idx)
    return _check_fd(
        np.asarray(forces)[idx], numeric, rtol, f"forces (eV/Å) vs -dE/dr by central differences (h = {h} Å)"
    )


def check_stress_fd(
    calc: BaseCalculator | EnergyFn,
    atoms: Atoms,
    rtol: float = 1e-6,
    *,
    h: float = 1e-5,
    stress: np.ndarray | None = None,
) -> float:
    """Assert that the stress equals (1/V) dE/d(strain) by central differences; returns the relative error.

    Args:
        calc: an ase Calculator, or an :data:`EnergyFn` (then ``stress`` is required).
        atoms: a structure periodic along all three axes (not modified).
        rtol: bound on max |s - s_fd| / max |s_fd| (strict <).
        h: strain step (dimensionless).
        stress: (6,) analytic Voigt stress (eV/Å^3, ASE's sign); default ``calc``'s.
    """
    if not atoms.pbc.all():
        raise ValueError(f"atoms: pbc {atoms.pbc.tolist()}; stress needs a cell periodic along all three axes")
    if stress is None:
        if not is_calculator(calc):
            raise TypeError("stress: required when an energy function is given instead of a calculator")
        stress = with_calc(atoms, calc).get_stress()
    numeric = fd_stress(calc, atoms, h)
    return _check_fd(stress, numeric, rtol, f"stress (eV/Å^3, Voigt) vs (1/V) dE/d(strain) (h = {h})")


def random_rotation(seed: int = 0) -> np.ndarray:
    """A proper rotation matrix (3, 3), det +1, drawn uniformly for ``seed``."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def rotated(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    """A copy rotated rigidly, cell with it: r -> R r (rows: r @ R.T)."""
    out = atoms.copy()
    out.positions = atoms.positions @ rotation.T
    out.cell = atoms.cell.array @ rotation.T
    return out


def translated(atoms: Atoms, shift: Sequence[float] = (13.7, -4.2, 0.9)) -> Atoms:
    """A copy with every atom moved by ``shift`` (Å); the cell stays."""
    out = atoms.copy()
    out.positions += np.asarray(shift, dtype=np.float64)
    return out


def permuted(atoms: Atoms, seed: int = 1, nontrivial: bool = True) -> tuple[Atoms, np.ndarray]:
    """(``atoms[perm]``, perm) for a random permutation ``perm`` of the atoms (``np.random.default_rng(seed)``).

    ``nontrivial``: draw again while the permutation is the identity (small cells
    often draw it, which would make a permutation check vacuous); False keeps the first draw.
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(atoms))
    while nontrivial and len(atoms) > 1 and np.array_equal(perm, np.arange(len(atoms))):
        perm = rng.permutation(len(atoms))
    return atoms[perm], perm


def image_shifted(atoms: Atoms, seed: int = 2, max_shift: int = 2) -> Atoms:
    """A copy with each atom moved by a random integer combination (|n| <= max_shift) of the periodic
    cell vectors: the same crystal, other periodic images chosen as the atoms."""
    out = atoms.copy()
    shifts = np.random.default_rng(seed).integers(-max_shift, max_shift + 1, size=(len(atoms), 3))
    shifts[:, [a for a in range(3) if not atoms.pbc[a]]] = 0
    out.positions += shifts @ atoms.cell.array
    return out


def supercell_repeat(atoms: Atoms) -> tuple[int, int, int]:
    """(2, 2, 2) for a fully periodic cell, 2 along the periodic axes and 1 elsewhere otherwise."""
    return tuple(2 if p else 1 for p in atoms.pbc)


def check_invariance(
    fn: BaseCalculator | FeatureFn | Descriptor,
    atoms: Atoms,
    *,
    transforms: Sequence[str] = TRANSFORMS,
    rtol: float = 1e-10,
    seed: int = 0,
) -> dict[str, float]:
    """Assert the symmetries of a potential or of per-atom quantities; returns {transform: relative error}.

    ``fn``: an ase Calculator (energy, eV, and forces, (n, 3) eV/Å, are checked),
    a descriptor, or a function of a structure returning per-atom values (n, ...)
    (features, per-atom energies). Transforms (:data:`TRANSFORMS`):

    - "rotation": rigid rotation of atoms and cell (:func:`random_rotation` of ``seed``):
      energy and per-atom values unchanged, forces rotate with the atoms;
    - "translation": every atom moved by the same vector: all unchanged;
    - "permutation": the atoms reordered: energy unchanged, forces and values reordered;
    - "supercell": the cell repeated along its periodic axes (:func:`supercell_repeat`, m copies):
      energy x m, forces and values repeated per copy;
    - "images": each atom replaced by one of its periodic images (:func:`image_shifted`): all unchanged.

    The last two apply to cells periodic along at least one axis and are skipped otherwise.
    Each output must agree within ``rtol`` times its largest magnitude (:func:`assert_close_rel`).
    """
    if is_calculator(fn):
        calc = fn

        def outputs(a: Atoms) -> dict[str, np.ndarray]:
            a = with_calc(a, calc)
            return {"energy": np.array([a.get_potential_energy()]), "forces": np.asarray(a.get_forces())}
    else:
        per_atom = feature_function(fn)

        def outputs(a: Atoms) -> dict[str, np.ndarray]:
            return {"per-atom values": np.asarray(per_atom(a))}

    ref = outputs(atoms)
    errors: dict[str, float] = {}
    for name in transforms:
        if name not in TRANSFORMS:
            raise ValueError(f"transforms: unknown {name!r}; expected some of {TRANSFORMS}")
        if name in ("supercell", "images") and not atoms.pbc.any():
            continue
        if name == "rotation":
            rot = random_rotation(seed)
            other = rotated(atoms, rot)
            expected = {k: v @ rot.T if k == "forces" else v for k, v in ref.items()}
        elif name == "translation":
            other, expected = translated(atoms), ref
        elif name == "permutation":
            other, perm = permuted(atoms, seed + 1)
            expected = {k: v if k == "energy" else v[perm] for k, v in ref.items()}
        elif name == "supercell":
            reps = supercell_repeat(atoms)
            other, m = atoms.repeat(reps), int(np.prod(reps))
            expected = {k: v * m if k == "energy" else np.tile(v, (m,) + (1,) * (v.ndim - 1)) for k, v in ref.items()}
        else:
            other, expected = image_shifted(atoms, seed + 2), ref
        got = outputs(other)
        worst = 0.0
        for key, value in expected.items():
            assert_close_rel(value, got[key], f"{key} under {name}", rtol)
            worst = max(worst, float(np.abs(value - got[key]).max() / max(np.abs(value).max(), 1e-300)))
        errors[name] = worst
    return errors


def nve_drift(
    calc: BaseCalculator,
    atoms: Atoms,
    steps: int = 1000,
    dt_fs: float = 1.0,
    temperature: float = 300.0,
    *,
    seed: int = 0,
    interval: int = 5,
    temperature_range: tuple[float, float] | None = None,
) -> float:
    """Energy conservation in NVE: max |E_total(t) - E_total(0)| per atom (eV/atom).

    Velocities from a Maxwell-Boltzmann distribution at 2 x ``temperature`` (K;
    about half goes into the potential energy) with ``np.random.default_rng(seed)``,
    net momentum removed, then ``steps`` velocity-Verlet steps of ``dt_fs`` fs;
    the total energy is sampled every ``interval`` steps. ``atoms`` is not modified.
    ``temperature_range`` (K): assert that the final temperature lies strictly
    inside it (a sane trajectory, not a collapse or an explosion).
    """
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    atoms = with_calc(atoms, calc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=2 * temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
    totals: list[float] = []
    dyn.attach(lambda: totals.append(atoms.get_potential_energy() + atoms.get_kinetic_energy()), interval=interval)
    dyn.run(steps)
    if temperature_range is not None:
        t = atoms.get_temperature()
        lo, hi = temperature_range
        assert lo < t < hi, f"NVE: final temperature {t:.0f} K outside ({lo}, {hi}) K"
    return float(np.abs(np.array(totals) - totals[0]).max()) / len(atoms)


# -- parametrization: descriptor x model x dtype -------------------------------------------------------------
def _small_gmp(elements: Sequence[str]) -> Descriptor:
    from amptorch.descriptors import GMP

    return GMP(orders=(0, 1, 2), sigmas=(0.3, 0.7), cutoff=4.0)


def _small_gmp_smooth(elements: Sequence[str]) -> Descriptor:
    from amptorch.descriptors import GMP

    return GMP(orders=(0, 1, 2), sigmas=(0.3, 0.7), cutoff=4.0, smooth_cutoff="cosine")


def _small_gsf(elements: Sequence[str]) -> Descriptor:
    from amptorch.descriptors import GaussianSF

    return GaussianSF(list(elements), g2=[(0.5, 0.0), (2.0, 1.5)], g4=[(0.1, 1.0, 1.0), (0.1, 2.0, -1.0)], cutoff=4.0)


DESCRIPTORS: dict[str, Callable[[Sequence[str]], Descriptor]] = {
    "gmp": _small_gmp,
    "gmp_smooth": _small_gmp_smooth,
    "gsf": _small_gsf,
}
"""Small descriptor factories, each called with the element symbols (GaussianSF needs them):
9 GMP features (orders 0-2, sigmas 0.3 / 0.7 Å, cutoff 4 Å; hard or cosine-smoothed cutoff)
and Gaussian symmetry functions (2 G2 + 2 G4 per element or pair, cosine cutoff 4 Å)."""

MODELS: tuple[str, ...] = ("singlenn", "bpnn")
"""Network names for :func:`make_model` (``amptorch.models.build_model``)."""


@dataclass(frozen=True)
class Precision:
    """Finite-difference step and tolerances that suit a model's floating-point type.

    Attributes:
        h: step of :func:`fd_forces` (Å) and :func:`fd_stress` (strain).
        fd_rtol: ``rtol`` of :func:`check_forces_fd` / :func:`check_stress_fd`.
        invariance_rtol: ``rtol`` of :func:`check_invariance`.
    """

    h: float
    fd_rtol: float
    invariance_rtol: float


DTYPES: dict[str, Precision] = {
    "float64": Precision(h=1e-5, fd_rtol=1e-6, invariance_rtol=1e-9),
    "float32": Precision(h=1e-2, fd_rtol=2e-2, invariance_rtol=1e-4),
}
"""Model dtypes and the checks' settings for each (float32 energies resolve ~1e-7 relative, so
its finite differences need a large step and a loose tolerance)."""


def combinations(
    descriptors: Sequence[str] | None = None, models: Sequence[str] | None = None, dtypes: Sequence[str] | None = None
) -> list[tuple[str, str, str]]:
    """(descriptor, model, dtype) names, all combinations (defaults: every entry of :data:`DESCRIPTORS`,
    :data:`MODELS`, :data:`DTYPES`), for ``pytest.mark.parametrize("desc, model, dtype", ...)``."""
    return list(itertools.product(descriptors or list(DESCRIPTORS), models or MODELS, dtypes or list(DTYPES)))


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    import torch

    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def _atomic_numbers(elements: Sequence[str | int]) -> list[int]:
    from ase.data import atomic_numbers

    return [atomic_numbers[e] if isinstance(e, str) else int(e) for e in elements]


def make_model(
    name: str,
    n_features: int,
    elements: Sequence[str | int],
    records: Sequence[FeatureRecord] = (),
    *,
    seed: int = 0,
    dtype: str | torch.dtype = "float64",
    energy_scale: float = 0.7,
    **options: Any,
) -> AtomisticModel:
    """An untrained AtomisticModel with nontrivial scaler tables and energy baseline (so the whole
    chain features -> scaling -> network -> energy is exercised), in eval mode.

    Args:
        name: "singlenn" or "bpnn" (``amptorch.models.build_model``).
        n_features: F, the descriptor's length.
        elements: symbols or atomic numbers the network knows.
        records: FeatureRecords whose per-element feature mean / spread set the scaler (default: identity).
        seed: torch seed of the weights and of the random energy baseline (eV/atom, standard normal).
        dtype: the network's floating-point type ("float64", "float32" or a torch dtype).
        energy_scale: eV per network output unit.
        options: network options (default ``hidden_layers=[8, 6]``).
    """
    import torch

    from amptorch.descriptors.record import N_Z
    from amptorch.models import AtomisticModel, build_model

    torch.manual_seed(seed)
    options.setdefault("hidden_layers", [8, 6])
    network = build_model(name, n_features, _atomic_numbers(elements), **options).to(_torch_dtype(dtype))
    g = torch.Generator().manual_seed(seed + 1)
    shift = torch.zeros(N_Z, n_features, dtype=torch.float64)
    scale = torch.ones(N_Z, n_features, dtype=torch.float64)
    if records:
        feats = np.concatenate([r.features for r in records])
        nums = np.concatenate([r.numbers for r in records])
        for z in np.unique(nums):
            f = feats[nums == z]
            shift[z] = torch.from_numpy(f.mean(0))
            scale[z] = torch.from_numpy(np.maximum(f.std(0), 1e-3) + 0.5 * f.std())
    refs = torch.randn(N_Z, generator=g, dtype=torch.float64)
    model = AtomisticModel(network, shift, scale, refs, energy_scale=energy_scale)
    model.eval()
    return model


def make_potential(
    descriptor: str | Descriptor,
    model: str = "singlenn",
    elements: Sequence[str | int] = ("Cu",),
    dtype: str = "float64",
    *,
    fit_to: Sequence[Atoms] = (),
    seed: int = 0,
    **options: Any,
) -> TrainedPotential:
    """A TrainedPotential built without training: ``descriptor`` (a :data:`DESCRIPTORS` name or a
    descriptor) and an untrained :func:`make_model` whose scaler is fitted to the features of
    ``fit_to`` (structures like the ones to be checked; without them the scaler is the identity
    and the network may see raw, saturating features)."""
    from ase.data import chemical_symbols

    from amptorch import TrainedPotential

    numbers = _atomic_numbers(elements)
    desc = (
        DESCRIPTORS[descriptor]([chemical_symbols[z] for z in numbers]) if isinstance(descriptor, str) else descriptor
    )
    records = [desc.compute(a, derivatives=False) for a in fit_to]
    options = {"hidden_layers": [8, 6], **options}
    net = make_model(model, desc.length, numbers, records, seed=seed, dtype=dtype, **options)
    return TrainedPotential(desc, net, {"name": model, "options": {"elements": numbers, **options}})


__all__ = [
    "ALLOY_ELEMENTS",
    "DESCRIPTORS",
    "DTYPES",
    "MODELS",
    "STRUCTURES",
    "TRANSFORMS",
    "EnergyFn",
    "FeatureFn",
    "Precision",
    "assert_close_rel",
    "check_forces_fd",
    "check_invariance",
    "check_stress_fd",
    "combinations",
    "energy_function",
    "fcc111_slab",
    "fcc_alloy",
    "fcc_bulk",
    "fd_feature_positions",
    "fd_feature_strain",
    "fd_forces",
    "fd_stress",
    "feature_function",
    "image_shifted",
    "is_calculator",
    "isolated_molecule",
    "label_emt",
    "make_cu_emt",
    "make_model",
    "make_potential",
    "max_rel_error",
    "nve_drift",
    "permuted",
    "random_rotation",
    "rattle_positions",
    "rel_error",
    "rotated",
    "strained",
    "supercell_repeat",
    "translated",
    "with_calc",
]
