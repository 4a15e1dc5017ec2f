"""Bad inputs raise amptorch.InputError (a ValueError) with a one-line message naming the field."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.data import chemical_symbols

from amptorch import InputError
from amptorch.descriptors import GMP, GaussianSF, from_settings
from amptorch.descriptors import densities as dens


def h2(d: float = 0.74, **kw) -> Atoms:
    return Atoms("H2", positions=[[0, 0, 0], [d, 0, 0]], **kw)


def raises(fn, *fields: str) -> str:
    """Run fn, expect InputError whose single-line message mentions every field."""
    with pytest.raises(InputError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for field in fields:
        assert field in msg, f"{field!r} not in {msg!r}"
    return msg


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


@pytest.mark.parametrize("desc", [GMP(), GaussianSF(["H", "O"], g2=[(0.1, 0.0)])], ids=["gmp", "gsf"])
def test_structure_errors(desc):
    raises(lambda: desc.compute(Atoms()), "atoms", "empty")
    raises(lambda: desc.compute(h2(np.nan)), "positions", "atom 1", "finite")
    raises(lambda: desc.compute(Atoms("H2", positions=[[0, 0, 0], [0, np.inf, 0]])), "positions")
    raises(lambda: desc.compute(h2(0.05)), "positions", "atoms 0 and 1", "0.1")
    raises(lambda: desc.compute(Atoms("H", cell=[0.05, 3, 3], pbc=True)), "positions", "own periodic image")
    raises(lambda: desc.compute("H2O"), "atoms", "ase.Atoms")


def test_zero_volume_periodic_cells():
    desc = GMP(orders=[0], sigmas=[0.5], cutoff=3.0)
    raises(lambda: desc.compute(h2(pbc=True)), "cell", "zero")  # no cell at all
    flat = [[3, 0, 0], [0, 3, 0], [3, 3, 0]]  # coplanar vectors
    raises(lambda: desc.compute(h2(cell=flat, pbc=True)), "cell", "xyz")
    # a slab only needs its periodic vectors independent; a zero z vector is fine there
    rec = desc.compute(h2(cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=[True, True, False]), derivatives=False)
    assert np.isfinite(rec.features).all()
    raises(
        lambda: desc.compute(h2(cell=[[3, 0, 0], [6, 0, 0], [0, 0, 0]], pbc=[True, True, False])),
        "cell",
        "xy",
    )


def test_unknown_element_without_fallback():
    pr = Atoms("Pr2", positions=[[0, 0, 0], [2.5, 0, 0]])
    raises(lambda: GMP(fallback=False).compute(pr), "numbers", "Pr", "fallback")
    # its density given explicitly, it is accepted
    rec = GMP(fallback=False, densities={"Pr": [(3.0, 1.2)]}).compute(pr, derivatives=False)
    assert np.isfinite(rec.features).all()


def test_fallback_accepts_every_element():
    desc = GMP(orders=[0, 1, 2], sigmas=[0.5, 1.0], cutoff=6.0)
    table = dens.psp_v3()
    missing = [z for z in range(1, 119) if z not in table]
    assert len(table) == 70 and 59 in missing and 118 in missing
    for z in range(1, 119):
        atoms = Atoms(numbers=[z, z], positions=[[0, 0, 0], [1.3, 1.1, 0.7]])
        rec = desc.compute(atoms)
        assert np.isfinite(rec.features).all() and np.isfinite(rec.dfeat).all(), chemical_symbols[z]
        assert rec.features[0, 0] > 0, chemical_symbols[z]  # order 0: a positive density overlap
    # fallback density: Z_val electrons in one Gaussian
    ((b, beta),) = dens.fallback_density(59)
    assert (
        b * (np.pi / beta) ** 1.5 == pytest.approx(dens.valence_electrons(59))
        and dens.valence_electrons(59) == 5
    )


@pytest.mark.parametrize("bad", [10, -1, 1.5, "2", None])
def test_orders_out_of_range(bad):
    raises(lambda: GMP(orders=[0, bad]), "orders", "0..9")
    raises(lambda: GMP.from_amptorch({"MCSHs": {"orders": [bad], "sigmas": [1.0]}}), "orders")


def test_probe_errors():
    raises(lambda: GMP(orders=[]), "orders", "empty")
    raises(lambda: GMP(probes=[(2, 3, 1.0)]), "groups", "order 2")
    raises(lambda: GMP(probes=[(2, 1.0), (2, 1, 1.0)]), "probes")
    raises(lambda: GMP(probes=[(2,)]), "probes")


@pytest.mark.parametrize("bad", [[0.0], [-0.5], [1.0, 0.0], [np.nan], [np.inf], ["a"]])
def test_sigmas_not_positive(bad):
    raises(lambda: GMP(sigmas=bad), "sigmas")


@pytest.mark.parametrize("bad", [-1.0, 0.0, np.nan, np.inf, "5"])
def test_bad_cutoff(bad):
    raises(lambda: GMP(cutoff=bad), "cutoff")
    raises(lambda: GaussianSF(["H"], g2=[(0.1, 0.0)], cutoff=bad), "cutoff")


def test_other_parameter_errors():
    raises(lambda: GMP(smooth_cutoff="gaussian"), "smooth_cutoff")
    raises(lambda: GMP(smooth_cutoff="polynomial", cutoff_gamma=0.0), "cutoff_gamma")
    raises(lambda: GMP(densities={"Cu": [(1.0, -2.0)]}), "densities", "Cu")
    raises(lambda: GMP(densities={"Qq": [(1.0, 2.0)]}), "densities", "Qq")
    raises(lambda: GMP(solid_harmonics=False, rs=0.0), "rs")
    raises(lambda: GaussianSF([], g2=[(0.1, 0.0)]), "elements", "empty")
    raises(lambda: GaussianSF(["Xx"], g2=[(0.1, 0.0)]), "elements", "Xx")
    raises(lambda: GaussianSF(["H"]), "g2, g4, g5")
    raises(lambda: GaussianSF(["H"], g2=[(-0.1, 0.0)]), "g2", "eta")
    raises(lambda: GaussianSF(["H"], g2=[(0.1,)]), "g2", "2 numbers")
    raises(lambda: GaussianSF(["H"], g4=[(0.1, 1.0, 0.5)]), "g4", "lambda")
    raises(lambda: GaussianSF(["H"], g5=[(0.1, 0.5, 1.0)]), "g5", "zeta")
    raises(lambda: GaussianSF(["H"], g2=[(0.1, 0.0)], cutoff_fn="tanh"), "cutoff_fn")
    raises(
        lambda: GaussianSF(["H"], g2=[(0.1, 0.0)], per_element={"O": {"g2": [(0.1, 0.0)]}}),
        "per_element",
        "O",
    )
    raises(
        lambda: GaussianSF(["H", "O"], g2=[(0.1, 0.0)], per_element={"O": {"g2": [(0.1, 0.0), (0.2, 0.0)]}}),
        "per_element[O]",
    )
    raises(lambda: from_settings({"kind": "SOAP"}), "kind")


def test_from_amptorch_errors():
    raises(lambda: GMP.from_amptorch([1, 2]), "fp_params")
    raises(lambda: GMP.from_amptorch({"orders": [0]}), "fp_params", "orders")
    raises(lambda: GMP.from_amptorch({"cutoff": 5.0}), "fp_params", "MCSHs")
    raises(
        lambda: GMP.from_amptorch({"MCSHs": {"orders": [0], "sigmas": [1.0]}}, fp_scheme="gaussian"),
        "fp_scheme",
    )
    raises(lambda: GMP.from_amptorch({"MCSHs_detailed_list": [{"sigmas": [1.0]}]}), "MCSHs_detailed_list")
    raises(
        lambda: GMP.from_amptorch(
            {"MCSHs": {"orders": [0], "sigmas": [1.0]}, "atom_gaussians": {"H": "/nonexistent.g"}}
        ),
        "atom_gaussians",
    )
    gs = {"default": {"G2": {"etas": [1.0], "rs_s": [0.0]}}}
    raises(lambda: GaussianSF.from_amptorch(gs, ["H"]), "cutoff", "missing")
    raises(lambda: GaussianSF.from_amptorch({"default": {"G3": {}, "cutoff": 6.0}}, ["H"]), "G3")
    raises(
        lambda: GaussianSF.from_amptorch(
            {"H": {"G2": {"etas": [1.0]}, "cutoff": 6.0}, "O": {"G2": {"etas": [1.0]}, "cutoff": 5.0}},
            ["H", "O"],
        ),
        "cutoffs",
    )


def test_gsf_element_missing_from_elements():
    desc = GaussianSF(["H"], g2=[(0.1, 0.0)])
    raises(lambda: desc.compute(Atoms("HO", positions=[[0, 0, 0], [1, 0, 0]])), "numbers", "O", "['H']")


@pytest.mark.parametrize("dtype", [np.int32, np.float16, np.complex128, "float128"])
def test_wrong_dtype(dtype):
    try:
        np.dtype(dtype)
    except TypeError:
        pytest.skip(f"numpy has no {dtype} here")
    raises(lambda: GMP().compute(h2(), dtype=dtype), "dtype", "float64 or float32")


@pytest.mark.parametrize("workers", [1, 2])
def test_compute_many_names_the_structure(workers):
    desc = GMP(orders=[0], sigmas=[0.5], cutoff=3.0)
    images = [h2(), h2(0.9), h2(0.01), h2()]
    msg = raises(
        lambda: desc.compute_many(images, workers=workers, progress=False), "structure 2:", "positions"
    )
    assert msg.startswith("structure 2: ")
    images = [h2(), Atoms("HPr", positions=[[0, 0, 0], [2, 0, 0]])]
    raises(
        lambda: GMP(fallback=False).compute_many(images, workers=workers, progress=False),
        "structure 1:",
        "Pr",
    )
    gsf = GaussianSF(["H"], g2=[(0.1, 0.0)])
    images = [h2(), h2(), h2(), Atoms()]
    raises(lambda: gsf.compute_many(images, workers=workers, progress=False), "structure 3:", "empty")


GMP_TABLE_FIELDS = ["sigma_alpha", "probe_sigma", "probe_order", "probe_amp", "comp_start", "comp_weight", "comp_poly",
                    "poly_start", "mono_coef", "mono_pow", "harmonic", "square", "include_self", "cutoff_kind",
                    "cutoff", "cutoff_gamma"]  # fmt: skip
GSF_TABLE_FIELDS = ["kind", "el1", "el2", "eta", "rs", "lam", "cutoff_kind", "cutoff", "cutoff_gamma"]


def same_tables(a, b, fields) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in fields)


def test_kernel_tables_checked_read_only_and_copyable():
    import copy
    import pickle

    from amptorch import _core

    t = GMP(orders=[0, 2, 3], sigmas=[0.5, 1.0], cutoff=6.0, smooth_cutoff="cosine").kernel_tables
    kw = {k: getattr(t, k) for k in GMP_TABLE_FIELDS}
    assert t.mono_pow.shape[1] == 3 and t.max_power == 3 and t.n_features == 6 and t.cutoff_kind == 1
    assert same_tables(_core.GMPTables(**kw), t, GMP_TABLE_FIELDS)
    for other in (copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert other is not t and same_tables(other, t, GMP_TABLE_FIELDS)
    with pytest.raises(TypeError):
        _core.GMPTables(*kw.values())  # keywords only
    with pytest.raises(AttributeError):
        t.square = False
    with pytest.raises(ValueError, match="read-only"):
        t.sigma_alpha[0] = 1.0
    for change, match in [
        (dict(probe_amp=kw["probe_amp"][:-1]), "probe arrays"),
        (dict(comp_poly=kw["comp_poly"] + 100), "comp_poly"),
        (dict(probe_sigma=kw["probe_sigma"] + 2), "probe index"),
        (dict(mono_pow=kw["mono_pow"][:-1]), "monomial arrays"),
        (dict(cutoff_kind=5), "cutoff_kind"),
        (dict(cutoff=-1.0), "cutoff"),
    ]:
        with pytest.raises(ValueError, match=match):
            _core.GMPTables(**{**kw, **change})
    assert not t.with_harmonic(False).harmonic and t.harmonic
    nonsolid = GMP(orders=[0, 2], sigmas=[0.5], cutoff=6.0, solid_harmonics=False, smooth_cutoff="cosine")
    with pytest.raises(ValueError, match="homogeneous"):
        nonsolid.kernel_tables.with_harmonic(True)
    with pytest.raises(ValueError, match="harmonic"):
        _core.GMPInference(nonsolid.kernel_tables)

    g = GaussianSF(["H", "O"], g2=[(0.1, 0.0)], g4=[(0.01, 1.0, 1.0)]).kernel_tables
    kw = {k: getattr(g, k) for k in GSF_TABLE_FIELDS}
    assert g.kind.shape == (2, g.n_features) and g.n_elements == 2
    assert same_tables(copy.deepcopy(g), g, GSF_TABLE_FIELDS)
    with pytest.raises(ValueError, match="el1, el2"):
        _core.GSFTables(**{**kw, "el2": kw["el2"] + 2})
    with pytest.raises(ValueError, match="one shape"):
        _core.GSFTables(**{**kw, "eta": kw["eta"][:, :-1]})


def test_from_amptorch_eta_units():
    """As the original: G2 and G4 etas are given in 1/Rc^2, G5 etas in 1/Å^2."""
    from amptorch.descriptors import GaussianSF

    rc = 5.0
    gs = {"default": {"G2": {"etas": [2.0], "rs_s": [0.0]}, "G4": {"etas": [0.5], "zetas": [1.0], "gammas": [1.0]},
                      "G5": {"etas": [0.5], "zetas": [2.0], "gammas": [-1.0]}, "cutoff": rc}}  # fmt: skip
    got = GaussianSF.from_amptorch(gs, ["Cu"])
    want = GaussianSF(["Cu"], g2=[(2.0 / rc**2, 0.0)], g4=[(0.5 / rc**2, 1.0, 1.0)], g5=[(0.5, 2.0, -1.0)], cutoff=rc)
    assert got.rows == want.rows
