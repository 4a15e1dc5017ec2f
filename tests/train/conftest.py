"""Fixtures for the trainer tests: tiny EMT-labelled Cu data and original-style configs.

Everything is small (Cu32 cells, 9 GMP features, cutoff 6 Å, a few epochs) so
the whole folder runs in about a minute on two CPU cores.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from amptorch.testing import make_cu_emt
from amptorch.train import AtomsTrainer

# small GMP settings: 3 orders x 3 sigmas = 9 features
ORDERS = [0, 1, 2]
SIGMAS = [0.5, 1.0, 1.5]
CUTOFF = 6.0


@pytest.fixture(scope="session")
def cu_images() -> list[Atoms]:
    """20 training structures: rattled (a width per cell), strained 32-atom fcc Cu cells with EMT
    energy (eV), forces (eV/Å) and stress (eV/Å^3)."""
    return make_cu_emt(20, seed=0, a=3.61, big_every=0, vacancy_every=0)


@pytest.fixture(scope="session")
def cu_test_images() -> list[Atoms]:
    """4 structures never trained on."""
    return make_cu_emt(4, seed=99, a=3.61, big_every=0, vacancy_every=0)


@pytest.fixture(scope="session")
def cu_gaussians(tmp_path_factory) -> dict[str, str]:
    """``atom_gaussians`` as the original takes them: {El: path to an ``<El>_pseudodensity.g`` file}.

    The original shipped one ``.g`` file per element; we ship the same numbers as
    ``psp_v3.json``, so the file is written from that table (lines of ``B beta``).
    """
    table = json.loads(resources.files("amptorch.descriptors").joinpath("psp_v3.json").read_text())
    path = Path(tmp_path_factory.mktemp("psp")) / "Cu_pseudodensity.g"
    lines = [f"{b!r} {beta!r}" for b, beta in table["elements"]["Cu"]]
    path.write_text("! Cu pseudodensity (psp_v3)\n" + "\n".join(lines) + "\n")
    return {"Cu": str(path)}


def gmp_config(images, run_dir, atom_gaussians=None, epochs: int = 5, **sections) -> dict:
    """The original's ``examples/1_GMP/2_GMP_S2EF.py`` config, made small.

    ``sections`` (``model=``, ``optim=``, ``dataset=``, ``cmd=``) update the defaults.
    """
    fp_params = {"MCSHs": {"orders": ORDERS, "sigmas": SIGMAS}, "cutoff": CUTOFF}
    if atom_gaussians is not None:
        fp_params["atom_gaussians"] = atom_gaussians
    config = {
        "model": {"name": "singlenn", "get_forces": True, "num_layers": 3, "num_nodes": 20,
                  "activation": "tanh", "batchnorm": False},
        "optim": {"device": "cpu", "force_coefficient": 0.05, "lr": 1e-2, "batch_size": 16, "epochs": epochs},
        "dataset": {"raw_data": images, "val_split": 0.2, "fp_scheme": "gmpordernorm", "fp_params": fp_params,
                    "save_fps": False},
        "cmd": {"debug": False, "run_dir": str(run_dir), "seed": 1, "identifier": "test", "verbose": False,
                "logger": False},
    }  # fmt: skip
    for name, extra in sections.items():
        config[name].update(extra)
    return config


def gaussian_config(images, run_dir, epochs: int = 5, **sections) -> dict:
    """The original's ``examples/2_SF`` config (Gaussian SF, BPNN), made small."""
    Gs = {
        "default": {
            "G2": {"etas": np.logspace(np.log10(0.05), np.log10(5.0), num=4), "rs_s": [0]},
            "G4": {"etas": [0.005], "zetas": [1.0, 4.0], "gammas": [1.0, -1.0]},
            "cutoff": CUTOFF,
        }
    }
    config = {
        "model": {"name": "bpnn", "get_forces": True, "num_layers": 2, "num_nodes": 10},
        "optim": {"force_coefficient": 0.04, "lr": 1e-2, "batch_size": 10, "epochs": epochs},
        "dataset": {"raw_data": images, "val_split": 0.2, "elements": ["Cu"], "fp_scheme": "gaussian",
                    "fp_params": Gs, "save_fps": False,
                    "cutoff_params": {"cutoff_func": "Cosine"}},
        "cmd": {"debug": False, "run_dir": str(run_dir), "seed": 1, "identifier": "sf", "verbose": False},
    }  # fmt: skip
    for name, extra in sections.items():
        config[name].update(extra)
    return config


@pytest.fixture(scope="module")
def gmp_run(cu_images, cu_gaussians, tmp_path_factory) -> AtomsTrainer:
    """A trained SingleNN-GMP run (8 epochs, with a run directory)."""
    run_dir = tmp_path_factory.mktemp("gmp_run")
    return AtomsTrainer(gmp_config(cu_images, run_dir, cu_gaussians, epochs=8)).train()
