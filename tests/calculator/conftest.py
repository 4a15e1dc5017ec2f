"""Fixtures for the calculator tests: EMT-labelled Cu32 cells and two small trained Cu potentials.

Both potentials are SingleNN 2x16 on 9 GMP features (orders 0-2, sigmas 0.5 /
1.0 / 1.5 Å, cutoff 6 Å), float64, trained for 30 epochs on 12 structures
with forces (about 3 s each on one core): ``cu_trainer`` with the original's
hard cutoff and a run directory (a checkpoint on disk), ``cu_smooth`` with a
cosine-smoothed cutoff.
"""

from __future__ import annotations

import pytest
from ase import Atoms

from amptorch.testing import fcc_bulk, make_cu_emt
from amptorch.train import AtomsTrainer

FP_PARAMS = {"MCSHs": {"orders": [0, 1, 2], "sigmas": [0.5, 1.0, 1.5]}, "cutoff": 6.0}


def cu_config(images, run_dir=None, smooth_cutoff: str | None = None, epochs: int = 30) -> dict:
    """A small original-style config; forces weigh in the loss and pick the best epoch."""
    fp = dict(FP_PARAMS)
    if smooth_cutoff:
        fp["smooth_cutoff"] = smooth_cutoff
    return {
        "model": {"name": "singlenn", "num_layers": 2, "num_nodes": 16},
        "optim": {"force_coefficient": 1.0, "lr": 3e-3, "batch_size": 4, "epochs": epochs, "cp_metric": "forces"},
        "dataset": {"raw_data": images, "fp_params": fp, "save_fps": False,
                    "scaling": {"type": "standardize", "elementwise": False}},
        "cmd": {"debug": run_dir is None, "run_dir": str(run_dir or "."), "identifier": "calc", "verbose": False,
                "seed": 0, "dtype": "float64"},
    }  # fmt: skip


@pytest.fixture(scope="session")
def cu_images() -> list[Atoms]:
    """12 rattled, strained 32-atom fcc Cu cells labelled by EMT (eV, eV/Å, eV/Å^3)."""
    return make_cu_emt(12, seed=0, a=3.61, big_every=0, vacancy_every=0, rattle=0.08)


@pytest.fixture(scope="session")
def cu_trainer(cu_images, tmp_path_factory) -> AtomsTrainer:
    """Hard cutoff (the original's GMP), with a checkpoint in ``trainer.run_dir``."""
    return AtomsTrainer(cu_config(cu_images, tmp_path_factory.mktemp("calc_run"))).train()


@pytest.fixture(scope="session")
def cu_smooth(cu_images) -> AtomsTrainer:
    """Cosine-smoothed cutoff: energy is continuous when neighbours cross the cutoff."""
    return AtomsTrainer(cu_config(cu_images, smooth_cutoff="cosine")).train()


@pytest.fixture()
def cu32() -> Atoms:
    """A rattled 32-atom cell with a non-orthogonal strain (no calculator)."""
    deform = [[1.01, 0.02, 0.0], [0.0, 0.99, 0.015], [0.01, 0.0, 1.0]]
    return fcc_bulk("Cu", 3.61, (2, 2, 2), deform=deform, rattle=0.1, seed=3, method="ase")


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every module here runs on one torch thread (tests/conftest.py)."""
