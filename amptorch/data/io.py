"""Reading structures and their labels (energy, forces, stress).

``read_structures`` turns whatever the user gives (Atoms, a list of Atoms, a
file, a glob, a list of files) into a list of ``ase.Atoms``; ``labels`` reads
the targets of one structure and says exactly which frame and field is wrong.

Units: energy eV, forces eV/Å, stress eV/Å^3 (Voigt xx yy zz yz xz xy, ASE's sign).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms

from amptorch.descriptors.record import voigt
from amptorch.errors import InputError, where

PathLike = str | os.PathLike


def _read_file(path: PathLike, field: str) -> list[Atoms]:
    """Every frame of one file (anything ``ase.io.read(path, ":")`` opens)."""
    import ase.io

    try:
        frames = ase.io.read(os.fspath(path), ":")
    except Exception as err:  # ase raises many kinds; turn all into one clear message
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        expected = "expected a file ase.io.read opens"
        raise InputError(f"could not read {os.fspath(path)!r} ({msg}); {expected}", field) from None
    if isinstance(frames, Atoms):
        frames = [frames]
    if not frames:
        raise InputError(f"{os.fspath(path)!r} holds no structures; expected at least one frame", field)
    return list(frames)


def _expand(path: PathLike, field: str) -> list[str]:
    """A path that exists, or the sorted files a glob pattern matches."""
    p = os.fspath(path)
    if os.path.exists(p):
        return [p]
    if glob.has_magic(p):
        hits = sorted(h for h in glob.glob(p) if os.path.isfile(h))
        if not hits:
            raise InputError(f"the pattern {p!r} matches no file; expected a path or glob of structure files", field)
        return hits
    raise InputError(f"no such file {p!r}; expected a path or glob of structure files", field)


def read_structures(
    source: Atoms | PathLike | Sequence[Atoms | PathLike] | Iterable[Atoms], field: str = "raw_data"
) -> list[Atoms]:
    """Structures from Atoms, a list of Atoms, a file, a glob, or a list of those.

    Args:
        source: an ``ase.Atoms``; a list/tuple (or other iterable) of Atoms;
            a path or glob pattern (str or ``os.PathLike``) of files that
            ``ase.io.read(path, ":")`` opens (extxyz, ASE db, OUTCAR, ...);
            or a list mixing Atoms and paths. Files are read in the order
            given; a glob's matches in sorted order.
        field: the name errors give the source (the config key, a CLI argument).

    Returns:
        The structures, in order (the list given is not copied atom by atom).

    Raises:
        InputError: a missing file, a glob matching nothing, an unreadable
            file, an item that is neither Atoms nor a path, or no structures.
    """
    if isinstance(source, Atoms):
        return [source]
    if isinstance(source, (str, os.PathLike)):
        out: list[Atoms] = []
        for f in _expand(source, field):
            out.extend(_read_file(f, field))
        return out
    if source is None or isinstance(source, (bytes, dict)) or not isinstance(source, Iterable):
        raise InputError(
            f"got {type(source).__name__}; expected ase.Atoms, a list of them, or a file path/glob", field
        )
    out = []
    for k, item in enumerate(source):
        if isinstance(item, Atoms):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            for f in _expand(item, field):
                out.extend(_read_file(f, field))
        else:
            raise InputError(f"got {type(item).__name__}; expected ase.Atoms or a file path", f"{field}[{k}]")
    if not out:
        raise InputError("no structures; expected at least one ase.Atoms", field)
    return out


def _property(atoms: Atoms, index: int | None, name: str, getter):
    """Call an ASE getter; None when the calculator does not have the property."""
    from ase.calculators.calculator import PropertyNotImplementedError

    try:
        return getter()
    except (PropertyNotImplementedError, NotImplementedError, KeyError, AttributeError):
        calc = atoms.calc
        changed = []
        if name in getattr(calc, "results", {}) and hasattr(calc, "check_state"):
            changed = calc.check_state(atoms)
        if changed:
            raise InputError(
                f"{where(index)}{name}: the structure's {', '.join(changed)} changed after the {name} was "
                "computed; expected the atoms the labels belong to"
            ) from None
        return None
    except Exception as err:  # a live calculator that fails (e.g. EMT stress of a molecule)
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{where(index)}{name}: the calculator failed ({msg})") from None


def labels(atoms: Atoms, index: int | None = None, forces: bool = True, stress: bool = False) -> dict:
    """The targets of one structure, checked.

    Works with a ``SinglePointCalculator`` (as ``ase.io.read`` attaches from
    extxyz, OUTCAR, ...) and with a live calculator such as EMT (it is run).

    Args:
        atoms: the structure, with a calculator attached.
        index: its position in the data set, named in error messages.
        forces: require forces.
        stress: require stress.

    Returns:
        ``{"energy": float eV, "forces": (n, 3) float64 eV/Å (when forces),
        "stress": (6,) float64 Voigt eV/Å^3 (when stress)}``. Forces are read
        without applying constraints (a FixAtoms atom keeps its DFT force).

    Raises:
        InputError: naming the frame and field, for no calculator, no or
            non-finite energy, missing / wrongly shaped / non-finite forces
            or stress.
    """
    if not isinstance(atoms, Atoms):
        raise InputError(f"{where(index)}atoms: got {type(atoms).__name__}; expected ase.Atoms")
    if atoms.calc is None:
        raise InputError(
            f"{where(index)}energy: no calculator attached; expected an ase.Atoms with an energy "
            "(e.g. read from extxyz, or atoms.calc = SinglePointCalculator(atoms, energy=...))"
        )
    n = len(atoms)
    energy = _property(atoms, index, "energy", atoms.get_potential_energy)
    if energy is None:
        raise InputError(f"{where(index)}energy: missing; expected the calculator to give an energy in eV")
    try:
        energy = float(np.asarray(energy, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        raise InputError(f"{where(index)}energy: got {energy!r}; expected one number (eV)") from None
    if not np.isfinite(energy):
        raise InputError(f"{where(index)}energy: got {energy}; expected a finite number (eV)")
    out: dict = {"energy": energy}
    if forces:
        f = _property(atoms, index, "forces", lambda: atoms.get_forces(apply_constraint=False))
        if f is None:
            raise InputError(f"{where(index)}forces: missing; expected ({n}, 3) eV/Å (or use forces=False)")
        f = np.asarray(f, dtype=np.float64)
        if f.shape != (n, 3):
            raise InputError(f"{where(index)}forces: shape {f.shape}; expected ({n}, 3)")
        if not np.isfinite(f).all():
            bad = int(np.flatnonzero(~np.isfinite(f).all(axis=1))[0])
            raise InputError(f"{where(index)}forces: atom {bad} has a non-finite force; expected finite eV/Å")
        out["forces"] = f
    if stress:
        s = _property(atoms, index, "stress", lambda: atoms.get_stress(voigt=True))
        if s is None:
            raise InputError(f"{where(index)}stress: missing; expected a (6,) Voigt stress in eV/Å^3")
        s = voigt(s)
        if s.shape != (6,):
            raise InputError(f"{where(index)}stress: shape {s.shape}; expected (6,) Voigt or (3, 3)")
        if not np.isfinite(s).all():
            raise InputError(f"{where(index)}stress: non-finite values; expected finite eV/Å^3")
        out["stress"] = s
    return out


def check_labels(images: Sequence[Atoms], forces: bool = True, stress: bool = False) -> list[dict]:
    """``labels`` of every structure (errors name the first bad frame's index)."""
    return [labels(a, k, forces=forces, stress=stress) for k, a in enumerate(images)]


__all__ = ["read_structures", "labels", "check_labels"]
