"""Default fingerprint settings from the nearest-neighbour distance (amptorch.descriptors.defaults)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from amptorch.descriptors import GMP, GaussianSF
from amptorch.descriptors.defaults import (
    CUTOFF_FACTOR,
    SIGMA_RANGE,
    default_fp_params,
    gmp_fp_params,
    gsf_fp_params,
    nearest_neighbor_distance,
)
from amptorch.errors import InputError


@pytest.mark.parametrize(
    ("atoms", "expected"),
    [
        (bulk("Cu", "fcc", a=3.61), 3.61 / math.sqrt(2)),  # one atom: the neighbours are its periodic images
        (bulk("Si", "diamond", a=5.43, cubic=True), 5.43 * math.sqrt(3) / 4),
        (bulk("Li", "bcc", a=3.44, cubic=True).repeat(2), 3.44 * math.sqrt(3) / 2),
    ],
)
def test_lattice_nearest_neighbour(atoms, expected):
    assert nearest_neighbor_distance([atoms]) == pytest.approx(expected, rel=1e-12)


def test_median_over_atoms_and_strided_images():
    # a dimer at 2 Å and a trimer chain at 3 Å: nearest distances 2, 2, 3, 3, 3 -> median 3
    dimer = Atoms("H2", positions=[[0, 0, 0], [2, 0, 0]])
    trimer = Atoms("H3", positions=[[0, 0, 0], [3, 0, 0], [6, 0, 0]])
    assert nearest_neighbor_distance([dimer, trimer]) == pytest.approx(3.0)
    # max_images=2 of [dimer, trimer, dimer] reads the first and the last: median 2
    assert nearest_neighbor_distance([dimer, trimer, dimer], max_images=2) == pytest.approx(2.0)


def test_isolated_atoms_are_left_out():
    lone = Atoms("H2", positions=[[0, 0, 0], [20, 0, 0]])  # no neighbour within 6 Å
    dimer = Atoms("H2", positions=[[0, 0, 0], [1.5, 0, 0]])
    assert nearest_neighbor_distance([lone, dimer]) == pytest.approx(1.5)


def test_settings_scale_with_the_structure():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    big = cu.copy()
    big.set_cell(cu.cell * 1.2, scale_atoms=True)
    small_p, big_p = default_fp_params([cu]), default_fp_params([big])
    d_nn = 3.61 / math.sqrt(2)
    assert small_p["MCSHs"]["orders"] == [0, 1, 2, 3, 4] and len(small_p["MCSHs"]["sigmas"]) == 8
    assert small_p["MCSHs"]["sigmas"][0] == pytest.approx(SIGMA_RANGE[0] * d_nn, abs=1e-3)
    assert small_p["MCSHs"]["sigmas"][-1] == pytest.approx(SIGMA_RANGE[1] * d_nn, abs=1e-3)
    assert small_p["cutoff"] == pytest.approx(CUTOFF_FACTOR * d_nn, abs=0.01)
    np.testing.assert_allclose(big_p["MCSHs"]["sigmas"], np.multiply(small_p["MCSHs"]["sigmas"], 1.2), atol=2e-3)
    assert big_p["cutoff"] == pytest.approx(1.2 * small_p["cutoff"], abs=0.02)
    gsf_small, gsf_big = default_fp_params([cu], "gaussian"), default_fp_params([big], "gaussian")
    assert gsf_big["default"]["cutoff"] == pytest.approx(1.2 * gsf_small["default"]["cutoff"], abs=0.02)
    # G2/G4 widths are in units of 1/Rc^2 (the original's convention), so they do not change with the scale
    assert gsf_big["default"]["G2"] == gsf_small["default"]["G2"]


def test_settings_build_descriptors_that_featurize():
    from amptorch.data import featurize

    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    gmp = GMP.from_amptorch(gmp_fp_params(2.55, orders=(0, 1, 2), n_sigmas=4))
    assert gmp.smooth_cutoff == "cosine" and gmp.cutoff == pytest.approx(7.01)
    gsf = GaussianSF.from_amptorch(gsf_fp_params(2.55), ["Cu"])
    for desc, n_features in ((gmp, 12), (gsf, 4 + 4)):
        (record,) = featurize([cu], desc, derivatives=False, with_labels=False, progress=False)
        assert record.features.shape == (4, n_features) and np.isfinite(record.features).all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: nearest_neighbor_distance([]), "images: got no structures"),
        (lambda: nearest_neighbor_distance([bulk("Cu")], max_images=0), "max_images: got 0; expected >= 1"),
        (lambda: nearest_neighbor_distance(["x"]), "images[0]: got str; expected ase.Atoms"),
        (lambda: nearest_neighbor_distance([Atoms("H")]), "images: no atom has a neighbour within 6 Å"),
        (lambda: gmp_fp_params(0.0), "d_nn: got 0.0; expected a nearest-neighbour distance > 0 Å"),
        (lambda: gmp_fp_params(float("nan")), "d_nn: got nan"),
        (lambda: gmp_fp_params(2.5, n_sigmas=0), "n_sigmas: got 0; expected >= 1"),
        (lambda: gmp_fp_params(2.5, sigma_range=(1.0, 0.5)), "sigma_range: got (1.0, 0.5); expected 0 < low"),
        (lambda: gsf_fp_params(2.5, cutoff_factor=-1), "cutoff_factor: got -1; expected > 0"),
        (lambda: default_fp_params([bulk("Cu")], "nope"), "fp_scheme: got 'nope'; expected one of ['gaussian', "),
    ],
)
def test_errors_name_the_field(call, message):
    with pytest.raises(InputError) as err:
        call()
    assert str(err.value).startswith(message)
