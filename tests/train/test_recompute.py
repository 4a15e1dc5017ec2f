"""Recompute-mode training (issue 11): features from geometry by the descriptor's torch twin.

(a) one batch: loss, forces, stress and parameter gradients equal to the stored-derivative path (1e-10, float64);
(b) a short AtomsTrainer run equals the stored-mode run, and its checkpoint drives the calculator;
(c) a DataLoader with workers over geometry records; (d) the errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.emt import EMT

from amptorch.data import GeometryDataset, GeometryRecord, collate, featurize
from amptorch.descriptors.registry import entry_of
from amptorch.errors import InputError
from amptorch.testing import make_cu_emt, make_potential
from amptorch.train.net import AtomsLoss


def _alloy_molecule():
    """A small open-boundary CuAu cluster with EMT labels (stress: none)."""
    m = molecule("CH4")
    m.set_chemical_symbols(["Cu", "Au", "Cu", "Au", "Cu"])
    m.positions *= 2.2
    m.rattle(0.05, seed=1)
    m.calc = EMT()
    return m


def _periodic():
    images = make_cu_emt(3, seed=3, a=3.61, big_every=0, vacancy_every=0)
    for k, a in enumerate(images):  # two elements, so BPNN has two networks
        a.numbers[k] = 79
        a.calc = EMT()
    return images


CASES = {"periodic": _periodic, "molecule": lambda: [_alloy_molecule(), _alloy_molecule()]}


def _grads(model, batch, stress: bool):
    model.zero_grad()
    model.train()
    pred = model(batch, forces=True, stress=stress)
    loss = AtomsLoss(force_coefficient=0.3, stress_coefficient=0.2 if stress else 0.0)(pred, batch)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return loss.detach(), pred, grads


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("desc", ["gmp_smooth", "gsf"])
@pytest.mark.parametrize("net", ["singlenn", "bpnn"])
def test_one_batch_equals_stored(case, desc, net):
    images = CASES[case]()
    stress = case == "periodic"
    pot = make_potential(desc, net, elements=("Cu", "Au"), dtype="float64", fit_to=images, seed=0)
    d, model = pot.descriptor, pot.model
    stored = collate(featurize(images, d, derivatives=True, strain=stress, forces=True, stress=stress))
    geometry = collate(GeometryDataset(images, d.cutoff, forces=True, stress=stress)[:])
    model.set_twin(entry_of(d).twin(d, model.elements))
    l1, p1, g1 = _grads(model, stored, stress)
    l2, p2, g2 = _grads(model, geometry, stress)
    assert geometry.features is None and geometry.dfeat is None

    def close(a, b):
        a, b = a.detach(), b.detach()
        scale = max(float(b.abs().max()), 1e-300)
        assert float((a - b).abs().max()) <= 1e-10 * scale

    close(l2, l1)
    close(p2["energy"], p1["energy"])
    close(p2["forces"], p1["forces"])
    close(g2, g1)
    if stress:
        close(p2["stress"], p1["stress"])
    assert "twin" not in " ".join(model.state_dict())  # checkpoints are the same in both modes


def _config(images, mode: str, dtype: str, run_dir, **dataset):
    return {
        "model": {"name": "singlenn", "get_forces": True, "hidden_layers": [8, 8]},
        "optim": {"force_coefficient": 0.1, "lr": 1e-2, "batch_size": 4, "epochs": 3},
        "dataset": {"raw_data": images, "val_split": 0.25, "features": mode, "save_fps": False,
                    "fp_params": {"MCSHs": {"orders": [0, 1, 2], "sigmas": [0.5, 1.0]}, "cutoff": 5.0,
                                  "smooth_cutoff": "cosine"}, **dataset},
        "cmd": {"debug": run_dir is None, "run_dir": str(run_dir or "."), "seed": 1, "verbose": False,
                "dtype": dtype},
    }  # fmt: skip


@pytest.fixture(scope="module")
def cu12():
    return make_cu_emt(12, seed=0, a=3.61, big_every=0, vacancy_every=0)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-4)])
def test_training_equals_stored_and_checkpoint_drives_the_calculator(cu12, tmp_path, dtype, rtol):
    from amptorch.potential import AmpTorchCalculator
    from amptorch.testing import check_forces_fd
    from amptorch.train import AtomsTrainer

    stored = AtomsTrainer(_config(cu12, "stored", dtype, None)).train()
    recompute = AtomsTrainer(_config(cu12, "recompute", dtype, tmp_path)).train()
    assert recompute.plan.recompute and recompute.potential.model.twin is not None
    for split in ("train", "valid"):
        for key in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse"):
            a, b = recompute.metrics[split][key], stored.metrics[split][key]
            assert abs(a - b) <= rtol * abs(b), (split, key, a, b)
    # the checkpoint is the stored mode's format: the calculator loads it and takes its fused C++ path
    assert not any("twin" in k for k in recompute.potential.model.state_dict())
    calc = AmpTorchCalculator(str(recompute.run_dir))
    assert calc.potential.model.twin is None
    atoms = make_cu_emt(1, seed=7, a=3.61, big_every=0, vacancy_every=0)[0]
    atoms.calc = None
    check_forces_fd(calc, atoms, rtol=1e-6 if dtype == "float64" else 2e-2, h=1e-4 if dtype == "float64" else 1e-2)
    # predict goes through the stored path on the same weights
    pred = recompute.predict(cu12[:2])
    assert np.isfinite(pred["energy"]).all()


def test_dataloader_workers_build_neighbor_lists(cu12):
    from torch.utils.data import DataLoader

    data = GeometryDataset(cu12[:6], 5.0, forces=True)
    assert isinstance(data.records[0], GeometryRecord) and data.records[0].pair_i is None
    loader = DataLoader(data, batch_size=3, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 2
    ref = collate(data[:3])
    b = batches[0]
    assert b.geometry and b.cell.shape == (3, 3, 3)
    for name in ("numbers", "positions", "pair_i", "pair_j", "shifts", "forces", "energy"):
        assert torch.equal(getattr(b, name), getattr(ref, name)), name
    assert int(b.pair_i.max()) < b.numbers.shape[0] and int(batches[1].pair_i.min()) == 0


def test_errors(cu12, tmp_path):
    from amptorch.descriptors.registry import DescriptorEntry, by_kind, register
    from amptorch.train import AtomsTrainer

    with pytest.raises(InputError, match="did you mean 'recompute'"):
        AtomsTrainer({"dataset": {"raw_data": cu12, "features": "recomput"}})
    with pytest.raises(InputError, match="dataset.features.*LMDB"):
        AtomsTrainer({"dataset": {"lmdb_path": str(tmp_path / "x.lmdb"), "features": "recompute"}})
    # a descriptor without a twin
    entry = by_kind("GMP")
    register(DescriptorEntry(entry.kind, entry.cls, entry.schemes, entry.from_params,
                             any_element=True, fused=entry.fused))  # fmt: skip
    try:
        with pytest.raises(InputError, match="dataset.features.*no torch twin"):
            AtomsTrainer({"dataset": {"raw_data": cu12, "features": "recompute"}})
    finally:
        register(entry)
    # GMP's twin needs solid harmonics: named at the key when the data are read
    cfg = _config(cu12, "recompute", "float64", None)
    cfg["dataset"]["fp_params"]["solid_harmonics"] = False
    with pytest.raises(InputError, match="dataset.features.*solid_harmonics"):
        AtomsTrainer(cfg).train()
    # a geometry batch on a model without a twin
    pot = make_potential("gmp", elements=("Cu",), fit_to=cu12[:2])
    batch = collate(GeometryDataset(cu12[:2], pot.descriptor.cutoff)[:])
    with pytest.raises(InputError, match="no torch twin"):
        pot.model(batch)


@pytest.mark.parametrize("desc", ["gmp", "gsf"])
def test_batched_twin_equals_single_calls(desc):
    """One batched call (cells (B, 3, 3), structure index) = each structure's own call."""
    from amptorch.data.geometry import geometry_record

    images = [*_periodic()[:2], _alloy_molecule()]
    pot = make_potential(desc, elements=("Cu", "Au"))
    d = pot.descriptor
    twin = entry_of(d).twin(d, [29, 79])
    recs = [geometry_record(a, k).with_neighbors(d.cutoff) for k, a in enumerate(images)]
    b = collate(recs)
    batched = twin(b.numbers, b.positions, b.cell, b.pair_i, b.pair_j, b.shifts, b.image)
    t = torch.from_numpy
    single = torch.cat([twin(t(r.numbers), t(r.positions), t(r.cell), t(r.pair_i), t(r.pair_j), t(r.shifts))
                        for r in recs])  # fmt: skip
    assert torch.allclose(batched, single, rtol=1e-13, atol=1e-13)
    with pytest.raises(InputError, match="image"):
        twin(b.numbers, b.positions, b.cell, b.pair_i, b.pair_j, b.shifts)


def test_trainer_stress_and_loader_workers(cu12):
    """Stress training in recompute mode, batches read by 2 DataLoader workers (``dataset.workers``)."""
    from amptorch.train import AtomsTrainer

    cfg = _config(cu12[:8], "recompute", "float64", None, workers=2)
    cfg["optim"].update(stress_coefficient=0.1, epochs=2)
    trainer = AtomsTrainer(cfg).train()
    assert trainer.net.iterator_train__num_workers == 2
    assert np.isfinite(trainer.net.history[-1, "train_stress_mae"])
    assert np.isfinite(trainer.metrics["valid"]["forces_mae"])
