"""The torch twins of the C++ kernels (GMPTorch, GSFTorch): same features, same derivatives, to round-off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111, molecule

from amptorch.descriptors import GMP, GaussianSF
from amptorch.errors import InputError
from amptorch.models.gmp_torch import GMPTorch
from amptorch.models.gsf_torch import GSFTorch, image_pairs
from amptorch.models.twin_terms import neighbor_list
from amptorch.testing import fcc_alloy, rattle_positions


def _triclinic():
    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))  # primitive fcc vectors: a skewed cell
    return rattle_positions(atoms, 0.05, seed=3)


STRUCTURES = {
    "bulk": lambda: rattle_positions(bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2)), 0.05, seed=1),
    "triclinic": _triclinic,
    "slab": lambda: rattle_positions(fcc111("Pt", (2, 2, 3), vacuum=6.0), 0.05, seed=2),
    "molecule": lambda: molecule("CH3CH2OH"),
    "alloy": lambda: fcc_alloy(),
}


def _gmp(smooth=None, square=True, cutoff=5.0):
    return GMP(orders=[0, 1, 2, 3, 4], sigmas=[0.3, 0.8, 1.5], cutoff=cutoff, smooth_cutoff=smooth, square=square)


def _gsf(atoms, fn="cosine", cutoff=5.0):
    elements = sorted(set(atoms.get_chemical_symbols()), reverse=True)  # not Z order: pair rows follow it
    return GaussianSF(elements, g2=[(0.5, 0.0), (2.0, 1.5)], g4=[(0.1, 1.0, 1.0), (0.1, 2.0, -1.0), (0.05, 1.5, 1.0)],
                      g5=[(0.2, 1.0, -1.0), (0.02, 4.0, 1.0)], cutoff=cutoff, cutoff_fn=fn)  # fmt: skip


def _twin(kind: str, atoms, smooth, cutoff=5.0):
    """(descriptor, its torch twin) for ``kind`` "gmp" or "gsf" (``smooth``: GMP smooth_cutoff / GSF cutoff_fn)."""
    if kind == "gmp":
        desc = _gmp(smooth, cutoff=cutoff)
        return desc, GMPTorch(desc, np.unique(atoms.numbers))
    desc = _gsf(atoms, smooth or "cosine", cutoff)
    return desc, GSFTorch(desc)


def _inputs(atoms, cutoff, dtype=torch.float64):
    nl = neighbor_list(atoms, cutoff)
    return (
        torch.as_tensor(atoms.numbers),
        torch.as_tensor(atoms.positions, dtype=dtype),
        torch.as_tensor(atoms.cell.array, dtype=dtype),
        torch.as_tensor(nl["pair_i"]),
        torch.as_tensor(nl["pair_j"]),
        torch.as_tensor(nl["shifts"]),
    )


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("smooth, square", [(None, True), ("cosine", True), ("polynomial", False), (None, False)])
def test_features_equal_the_kernel(name, smooth, square):
    atoms = STRUCTURES[name]()
    gmp = _gmp(smooth, square)
    ref = gmp.compute(atoms, derivatives=False).features
    feats = GMPTorch(gmp, np.unique(atoms.numbers))(*_inputs(atoms, gmp.cutoff)).numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("fn", ["cosine", "polynomial"])
def test_symmetry_functions_equal_the_kernel(name, fn):
    atoms = STRUCTURES[name]()
    gsf = _gsf(atoms, fn)
    ref = gsf.compute(atoms, derivatives=False).features
    feats = GSFTorch(gsf)(*_inputs(atoms, gsf.cutoff)).numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("kind", ["gmp", "gsf"])
@pytest.mark.parametrize("name", ["bulk", "triclinic", "slab", "molecule"])
def test_derivatives_equal_the_kernel(name, kind):
    """Autograd Jacobians against the kernel's pair blocks (positions) and strain blocks (cell)."""
    atoms = STRUCTURES[name]()
    if len(atoms) > 12:
        atoms = atoms[:12]
    desc, module = _twin(kind, atoms, "cosine", cutoff=4.5)
    periodic = bool(atoms.pbc.all())
    rec = desc.compute(atoms, derivatives=True, strain=periodic)
    Z, pos, cell, *pairs = _inputs(atoms, desc.cutoff)
    jac = torch.autograd.functional.jacobian(lambda p: module(Z, p, cell, *pairs), pos).numpy()  # (n, F, n, 3)
    dense = rec.dense_dfeat()
    np.testing.assert_allclose(jac, dense, rtol=0, atol=1e-10 * np.abs(dense).max())
    if periodic:
        def strained(eps):
            t = torch.eye(3, dtype=eps.dtype) + eps
            return module(Z, pos @ t, cell @ t, *pairs)

        js = torch.autograd.functional.jacobian(strained, torch.zeros(3, 3, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(js, rec.dfeat_strain, rtol=0, atol=1e-10 * np.abs(rec.dfeat_strain).max())


@pytest.mark.parametrize("kind", ["gmp", "gsf"])
def test_float32_and_double_backward(kind):
    atoms = STRUCTURES["bulk"]()[:6]
    desc, module = _twin(kind, atoms, "cosine", cutoff=4.0)
    ref = desc.compute(atoms, derivatives=False).features
    f32 = module.to(torch.float32)(*_inputs(atoms, desc.cutoff, torch.float32))
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.numpy(), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # force training differentiates forces again: second derivatives exist and are right
    desc, module = _twin(kind, atoms, "cosine", cutoff=4.0)  # fresh float64 tables (the cast rounded them)
    Z, pos, cell, *pairs = _inputs(atoms, desc.cutoff)
    weights = torch.linspace(0.5, 1.5, desc.length, dtype=torch.float64)

    def energy(p):
        return (module(Z, p, cell, *pairs) * weights).sum()

    assert torch.autograd.gradgradcheck(lambda p: torch.autograd.grad(energy(p), p, create_graph=True)[0],
                                        (pos.clone().requires_grad_(True),), eps=1e-6, atol=1e-6)  # fmt: skip


def test_shifts_are_integers_and_images_complete():
    """The recovered cell shifts are integral and reproduce every displacement of vesin's list."""
    for name in ("triclinic", "slab"):
        atoms = STRUCTURES[name]()
        nl = neighbor_list(atoms, 5.0)
        assert np.array_equal(nl["shifts"], np.rint(nl["shifts"]))
        d = atoms.positions[nl["pair_j"]] - atoms.positions[nl["pair_i"]] + nl["shifts"] @ atoms.cell.array
        r = np.linalg.norm(d, axis=1)
        assert r.max() <= 5.0 and r.min() > 0.1
        # as many images as ase's own neighbour list finds
        from ase.neighborlist import neighbor_list as ase_nl

        assert len(r) == len(ase_nl("i", atoms, 5.0))


def test_bad_inputs():
    with pytest.raises(InputError, match="solid_harmonics=True"):
        GMPTorch(GMP(orders=[0], sigmas=[1.0], solid_harmonics=False), [29])
    with pytest.raises(InputError, match="has no density"):
        GMPTorch(GMP(orders=[0], sigmas=[1.0], fallback=False), [117])
    gmp = _gmp("cosine")
    atoms = molecule("H2O")
    with pytest.raises(InputError, match=r"numbers: element\(s\) Z=\[8\] not among GMPTorch's elements \[1\]"):
        GMPTorch(gmp, [1])(*_inputs(atoms, gmp.cutoff))
    with pytest.raises(InputError, match=r"Z=\[8\] not among the symmetry functions' elements \[1\]"):
        GSFTorch(GaussianSF(["H"], g2=[(1.0, 0.0)]))(*_inputs(atoms, 6.0))


def test_image_pairs():
    a, b = image_pairs(np.array([0, 0, 0, 1, 2, 2]))
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2), (4, 5)]
    a, b = image_pairs(np.array([], dtype=np.int64))
    assert len(a) == len(b) == 0
