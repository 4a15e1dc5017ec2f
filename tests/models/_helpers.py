"""Structures, descriptors and finite-difference helpers for the model tests."""

from __future__ import annotations

import functools

import numpy as np
import torch
from ase.build import bulk, fcc111, molecule

from amptorch.data.batch import collate
from amptorch.descriptors import GMP, GaussianSF
from amptorch.models import AtomisticModel, build_model

ELEMENTS = [1, 6, 8, 29, 46]
H_POS = 1e-5  # Å, position step of the central differences
H_STRAIN = 1e-5  # strain step


def make_structure(kind: str):
    if kind == "bulk":
        a = bulk("Cu", "fcc", a=3.7, cubic=True)  # 4 atoms, fully periodic
        a.numbers[1] = 46
        a.rattle(0.08, seed=3)
    elif kind == "slab":
        a = fcc111("Cu", size=(2, 2, 2), vacuum=4.0)  # pbc T, T, F
        a.numbers[-1] = 46
        a.rattle(0.08, seed=4)
        assert list(a.pbc) == [True, True, False]
    elif kind == "molecule":
        a = molecule("CH3OH")
        a.rattle(0.05, seed=5)
    else:
        raise ValueError(kind)
    return a


@functools.lru_cache
def descriptor(name: str):
    if name == "gmp":
        return GMP(orders=(0, 1, 2), sigmas=(0.3, 0.7), cutoff=4.0, smooth_cutoff="cosine")
    if name == "gsf":
        return GaussianSF(
            ["H", "C", "O", "Cu", "Pd"],
            g2=[(0.5, 0.0), (2.0, 1.5)],
            g4=[(0.1, 1.0, 1.0), (0.1, 2.0, -1.0)],
            cutoff=4.0,
        )
    raise ValueError(name)


def record(desc_name: str, atoms, dtype=np.float64):
    return descriptor(desc_name).compute(atoms, derivatives=True, strain=True, dtype=dtype)


def make_model(net: str, n_features: int, records=(), seed: int = 0, dtype=torch.float64, **options):
    """A model with nontrivial scaler tables and energy baseline (so the whole chain is exercised)."""
    torch.manual_seed(seed)
    options.setdefault("hidden_layers", [8, 6])
    if net == "singlenn_eo":
        network = build_model("singlenn", n_features, ELEMENTS, element_outputs=True, **options)
    else:
        network = build_model(net, n_features, ELEMENTS, **options)
    network = network.to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    shift = torch.zeros(119, n_features, dtype=torch.float64)
    scale = torch.ones(119, n_features, dtype=torch.float64)
    if records:
        feats = np.concatenate([r.features for r in records])
        nums = np.concatenate([r.numbers for r in records])
        for z in np.unique(nums):
            f = feats[nums == z]
            shift[z] = torch.from_numpy(f.mean(0))
            scale[z] = torch.from_numpy(np.maximum(f.std(0), 1e-3) + 0.5 * f.std())
    refs = torch.randn(119, generator=g, dtype=torch.float64)
    model = AtomisticModel(network, shift, scale, refs, energy_scale=0.7)
    model.eval()
    return model


def model_energies(model, records) -> np.ndarray:
    with torch.no_grad():
        out = model(collate(records), forces=False)
    return out["energy"].double().numpy()


def fd_forces(model, desc_name: str, atoms) -> np.ndarray:
    """-dE/dr by central differences: move real atoms, re-featurize, re-run the model."""
    recs = []
    for a in range(len(atoms)):
        for c in range(3):
            for sign in (1.0, -1.0):
                moved = atoms.copy()
                p = moved.get_positions()
                p[a, c] += sign * H_POS
                moved.set_positions(p)
                recs.append(record(desc_name, moved))
    e = model_energies(model, recs).reshape(len(atoms), 3, 2)
    return -(e[..., 0] - e[..., 1]) / (2 * H_POS)


def strained(atoms, eps: np.ndarray):
    """Homogeneous deformation r -> r (I + eps), cell -> cell (I + eps) (rows are vectors)."""
    out = atoms.copy()
    d = np.eye(3) + eps
    out.set_cell(atoms.get_cell() @ d, scale_atoms=False)
    out.set_positions(atoms.get_positions() @ d)
    return out


def fd_stress(energy_fn, atoms) -> np.ndarray:
    """(6,) Voigt (1/V) dE/d(symmetric strain) by central differences, ASE's sign."""
    pairs = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
    structures = []
    for a, b in pairs:
        for sign in (1.0, -1.0):
            eps = np.zeros((3, 3))
            eps[a, b] += 0.5 * sign * H_STRAIN
            eps[b, a] += 0.5 * sign * H_STRAIN
            structures.append(strained(atoms, eps))
    e = np.asarray(energy_fn(structures)).reshape(6, 2)
    return (e[:, 0] - e[:, 1]) / (2 * H_STRAIN) / atoms.get_volume()


def rel_err(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())
