"""amptorch.descriptor.{Gaussian, GMP, GMPOrderNorm} and amptorch.dataset build our descriptors (custom sets too)."""

from __future__ import annotations

import numpy as np
import pytest

from amptorch.descriptors import GMP, GaussianSF
from amptorch.errors import InputError
from tests.compat.conftest import GS, MCSHS

ELEMENTS = ["Cu", "C", "O"]


def test_gaussian_and_descriptor_set_agree():
    """The original's gaussian_descriptor_set_test: a Gs dict and the set built from it have equal setups."""
    from amptorch.dataset import AtomsDataset
    from amptorch.descriptor.Gaussian import GaussianDescriptorSet

    ds = AtomsDataset(images=[], descriptor_setup=("gaussian", GS, {"cutoff_func": "Cosine"}, ELEMENTS),
                      forcetraining=True, save_fps=True, scaling={"type": "normalize", "range": (0, 1)},
                      process=False)  # fmt: skip
    gds = GaussianDescriptorSet(ELEMENTS)
    gds.process_combinatorial_Gs(GS)
    for el in ELEMENTS:
        np.testing.assert_array_equal(ds.descriptor.descriptor_setup[el], gds.descriptor_setup[el])
    assert ds.descriptor.descriptor_setup_hash == gds.descriptor_setup_hash
    assert isinstance(ds.descriptor, GaussianSF) and len(ds) == 0


def test_descriptor_set_is_our_gaussian_sf(images):
    """A set gives the same fingerprints as the Gs dict it came from; a zipped (custom) set trains as one."""
    from amptorch.descriptor.Gaussian import GDS, Gaussian

    gds = GDS(ELEMENTS)
    gds.process_combinatorial_Gs(GS)
    ours = GaussianSF.from_amptorch(GS, ELEMENTS)
    a, b = gds.to_descriptor().compute(images[3]), ours.compute(images[3])
    np.testing.assert_array_equal(a.features, b.features)
    custom = GDS(np.unique(ELEMENTS), 6.0, {"cutoff_func": "cosine"})
    custom.batch_add_descriptors(2, [0.25, 2.5, 0.25, 2.5], [0.0, 0.0, 3.0, 3.0], [])
    custom.batch_add_descriptors(4, [0.005, 0.005, 0.01, 0.01], [1.0, 4.0, 4.0, 16.0], [1.0, 1.0, -1.0, -1.0])
    desc = custom.to_descriptor()
    assert desc.length == 4 * 3 + 4 * 6 == Gaussian(custom, []).length
    partial = GDS(ELEMENTS)
    partial.add_g2("Cu", "C")  # one pair only: not expressible as our per-element function lists
    with pytest.raises(InputError):
        partial.to_descriptor()


def test_gmp_classes_are_our_gmp():
    from amptorch.descriptor.GMP import GMP as OriginalGMP
    from amptorch.descriptor.GMPOrderNorm import GMPOrderNorm

    norm = GMPOrderNorm(MCSHS, ELEMENTS)
    assert isinstance(norm, GMP) and norm.hash == GMP.from_amptorch(MCSHS).hash
    old = OriginalGMP(MCSHS, ELEMENTS)
    assert old.hash == GMP.from_amptorch(MCSHS, fp_scheme="gmp").hash and old.elements == ELEMENTS


def test_get_fingerprints_via_dataset(images):
    """The original's get_fp_example: AtomsDataset items expose ``fingerprint`` (n, F) tensors."""
    from amptorch.dataset import AtomsDataset

    ds = AtomsDataset(images=images[:4], descriptor_setup=("gaussian", GS, {"cutoff_func": "Cosine"}, ELEMENTS),
                      forcetraining=False, save_fps=False)  # fmt: skip
    assert len(ds) == 4 and ds.input_dim == 36
    for data, atoms in zip(ds, images[:4], strict=True):
        assert data.fingerprint.numpy().shape == (3, 36)
        assert data.atomic_numbers.tolist() == atoms.numbers.tolist()
        assert data.energy == pytest.approx(atoms.get_potential_energy())
    gmp = AtomsDataset(images[:2], ("gmpordernorm", MCSHS, "NA", ELEMENTS), forcetraining=True, save_fps=False)
    assert gmp[0].dfeat is not None and gmp.feature_scaler.scaler.fitted


def test_model_classes():
    import torch

    from amptorch.model import BPNN, CustomLoss, SingleNN
    from amptorch.models import BPNN as OurBPNN
    from amptorch.train.net import AtomsLoss

    net = BPNN(["Cu", "C"], 8, num_nodes=5, num_layers=2, get_forces=True, activation=torch.nn.Tanh)
    assert isinstance(net, OurBPNN) and net.hidden_layers == [5, 5] and net.elements == [6, 29]
    assert SingleNN([29], 8, hidden_layers=[4]).num_params == 8 * 4 + 4 + 4 + 1
    assert isinstance(CustomLoss(force_coefficient=0.04, loss="mae"), AtomsLoss)
