"""The active-learning loop (amptorch.uq.active) on a tiny Cu model: MD with σ selects frames above the
threshold, EMT labels them, the training set grows; and its inputs checked."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT

from amptorch.errors import InputError
from amptorch.testing import fcc_bulk, label_emt
from amptorch.uq.active import ActiveLearner, active_learning_loop, label, langevin_driver, sigma_of

GMP = {"MCSHs": {"orders": [0, 1, 2], "sigmas": [0.5, 1.0, 1.5]}, "cutoff": 5.0, "smooth_cutoff": "cosine"}


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def tiny_fit(run_dir):
    """fit(images) -> TrainedPotential: SingleNN 1x8 on a small GMP, energies and forces, 12 epochs."""
    from amptorch.trainer import AtomsTrainer

    def fit(images):
        cfg = {
            "model": {"name": "singlenn", "get_forces": True, "num_layers": 1, "num_nodes": 8},
            "optim": {"force_coefficient": 0.1, "lr": 1e-2, "batch_size": 8, "epochs": 12},
            "dataset": {"raw_data": images, "val_split": 0, "fp_scheme": "gmpordernorm", "fp_params": GMP,
                        "save_fps": False},
            "cmd": {"debug": False, "run_dir": str(run_dir), "seed": 1, "identifier": "al", "verbose": False,
                    "logger": False},
        }  # fmt: skip
        trainer = AtomsTrainer(cfg)
        trainer.train()
        return trainer.potential

    return fit


def initial(n: int = 40) -> list:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        atoms = fcc_bulk("Cu", 3.61, (1, 1, 2), rattle=0.0)
        atoms.positions += rng.normal(0, 0.04, atoms.positions.shape)
        out.append(label_emt(atoms))
    return out


def test_loop_selects_above_threshold_and_grows(tmp_path):
    """Hot MD (1500 K) of a model trained on 0.04 Å rattles: the latent σ crosses the threshold, those frames
    (and only those) are labelled by EMT and join the data (one in four calibrates); MD stops after
    ``max_select``; the next model trains on more frames."""
    start = fcc_bulk("Cu", 3.61, (1, 1, 2), rattle=0.0)
    test = initial(6)
    learner = ActiveLearner(tiny_fit(tmp_path), langevin_driver(start, 1500, steps=120, interval=4), EMT(),
                            threshold=0.1, method="latent", max_select=4, stop_factor=50.0, test_images=test,
                            latent={"k": 3}, verbose=False)  # fmt: skip
    data = initial()
    result = learner.run(data, rounds=1)
    first, last = result.rounds
    assert first.selected == 4 and first.stopped and len(result.selected) == 4
    assert all(a.info["uq_sigma"] > 0.1 for a in result.selected)
    assert first.max_sigma == max(a.info["uq_sigma"] for a in result.selected)
    assert first.snapshots >= 4
    # every selected frame carries EMT's labels at its own positions, and joined the data
    for atoms in result.selected:
        ref = atoms.copy()
        ref.calc = EMT()
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-10)
    assert len(result.train) + len(result.calib) == len(data) + first.selected
    assert last.n_train + last.n_calib == first.n_train + first.n_calib + first.selected
    assert last.n_train > first.n_train and last.snapshots == 0
    assert np.isfinite([first.energy_mae, first.forces_mae, last.energy_mae, last.forces_mae]).all()
    assert "| 0 | 30 |" in result.table() and result.potential is not None


def test_nothing_selected_below_threshold(tmp_path):
    """σ never above the threshold: MD runs to its end, nothing is labelled, the data stays as it was."""
    calls = []

    def driver(calc, r):
        calls.append(r)
        atoms = initial(1)[0]
        atoms.calc = calc
        for _ in range(3):
            atoms.get_forces()
            yield atoms

    result = active_learning_loop(tiny_fit(tmp_path), initial(), driver, EMT(), threshold=1e6, rounds=1,
                                  test_images=None, method="latent", verbose=False)  # fmt: skip
    first = result.rounds[0]
    assert calls == [0] and first.snapshots == 3 and first.selected == 0 and not first.stopped
    assert 0 < first.max_sigma < 1e6 and np.isnan(first.energy_mae)
    assert result.rounds[1].n_train == first.n_train and not result.selected


def test_md_failure_ends_the_round_not_the_loop(tmp_path):
    """An InputError raised inside MD (a model pushing atoms where the descriptor refuses them) ends that
    round's MD with what was selected so far, recorded in the row."""

    def driver(calc, r):
        atoms = initial(1)[0]
        atoms.calc = calc
        atoms.get_forces()
        yield atoms
        raise InputError("positions: two atoms 0.1 Å apart; expected ...")

    result = active_learning_loop(tiny_fit(tmp_path), initial(), driver, EMT(), threshold=1e6, rounds=1,
                                  method="latent", verbose=False)  # fmt: skip
    first = result.rounds[0]
    assert first.snapshots == 1 and first.stopped and first.md_error.startswith("positions: two atoms")
    assert len(result.rounds) == 2 and not result.rounds[1].md_error


def test_sigma_of_and_label():
    res = {"energy_uncertainty": 0.8, "forces_uncertainty": np.array([0.1, 0.3, 0.2, 0.0])}
    assert sigma_of(res, "forces") == 0.3 and sigma_of(res, "energy") == pytest.approx(0.2)
    atoms = fcc_bulk("Cu", 3.61, (1, 1, 1), rattle=0.05)
    atoms.info["uq_sigma"] = 1.0
    (labelled,) = label([atoms], EMT())
    assert labelled.info["uq_sigma"] == 1.0 and labelled is not atoms
    assert labelled.get_potential_energy() == pytest.approx(label_emt(atoms.copy()).get_potential_energy())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"threshold": -1.0}, "threshold: got -1.0"),
        ({"criterion": "stress"}, "criterion: got 'stress'"),
        ({"method": "bayes"}, "uncertainty: got 'bayes'"),
        ({"max_select": 0}, "max_select: got 0"),
        ({"labeler": object()}, "labeler: got object"),
        ({"latent": {"kk": 3}}, "latent: .*unexpected keyword argument 'kk'"),
        ({"latent": {"k": 0}}, "k: got 0"),
    ],
)
def test_bad_settings(kwargs, match):
    args = {"fit": lambda images: None, "md_driver": lambda calc, r: [], "labeler": EMT(), "threshold": 0.1,
            **kwargs}  # fmt: skip
    with pytest.raises(InputError, match=match):
        ActiveLearner(**args)


def test_bad_runs():
    learner = ActiveLearner(lambda images: None, lambda calc, r: [], EMT(), threshold=0.1, verbose=False)
    with pytest.raises(InputError, match="expected at least 10"):
        learner.run(initial(8), rounds=1)
    with pytest.raises(InputError, match="rounds: got -1"):
        learner.run(initial(40), rounds=-1)
    with pytest.raises(InputError, match="fit: returned NoneType; expected a TrainedPotential"):
        learner.run(initial(40), rounds=0)
    with pytest.raises(InputError, match="temperature_K: got -5"):
        langevin_driver(fcc_bulk(), -5, steps=10)
