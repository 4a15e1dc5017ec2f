"""Tiny data in the style of the original AmpTorch's examples: EMT-labelled CuCO molecules."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT

GS = {
    "default": {
        "G2": {"etas": np.logspace(np.log10(0.05), np.log10(5.0), num=4), "rs_s": [0]},
        "G4": {"etas": [0.005], "zetas": [1.0, 4.0], "gammas": [1.0, -1.0]},
        "cutoff": 6,
    },
}
MCSHS = {"MCSHs": {"orders": [0, 1, 2], "sigmas": np.linspace(0, 2.0, 5, endpoint=True)[1:]}, "cutoff": 6.0}


def cuco(distances) -> list[Atoms]:
    """The original examples' CuCO images (bent chain, 10 Å box), labelled by EMT."""
    images = []
    for d in distances:
        atoms = Atoms(
            "CuCO", [(-d * np.sin(0.65), d * np.cos(0.65), 0), (0, 0, 0), (d * np.sin(0.65), d * np.cos(0.65), 0)]
        )
        atoms.set_cell([10, 10, 10])
        atoms.wrap(pbc=True)
        atoms.calc = EMT()
        images.append(atoms)
    return images


def config(images, run_dir, epochs: int = 3, **dataset) -> dict:
    """The original examples' config, shrunk (tiny network, few epochs)."""
    return {
        "model": {"get_forces": True, "num_layers": 2, "num_nodes": 5, "batchnorm": False},
        "optim": {"force_coefficient": 0.04, "lr": 1e-2, "batch_size": 8, "epochs": epochs, "loss": "mse",
                  "metric": "mae", "gpus": 0},
        "dataset": {"raw_data": images, "val_split": 0, "fp_scheme": "gaussian", "fp_params": GS,
                    "save_fps": False, **dataset},
        "cmd": {"debug": False, "run_dir": str(run_dir), "seed": 1, "identifier": "test", "verbose": False,
                "logger": False},
    }  # fmt: skip


@pytest.fixture(scope="module")
def images():
    return cuco(np.linspace(2, 5, 16))


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield
