"""Fixtures for the CLI tests: tiny extxyz files, a YAML config and a checkpoint trained by ``amptorch train``.

Everything runs in-process through ``amptorch.cli.main`` (fast), in a
temporary directory: Cu32 cells labelled by EMT, 9 GMP features, cutoff 5 Å,
SingleNN 2x8, 3 epochs.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import ase.io
import pytest
import yaml
from ase import Atoms

from amptorch.cli import main
from amptorch.testing import make_cu_emt

CONFIG = {
    "model": {"name": "singlenn", "get_forces": True, "num_layers": 2, "num_nodes": 8},
    "optim": {"force_coefficient": 0.1, "lr": 1e-2, "batch_size": 4, "epochs": 3},
    "dataset": {
        "raw_data": "train.extxyz",
        "val_split": 0.25,
        "fp_scheme": "gmpordernorm",
        "fp_params": {"MCSHs": {"orders": [0, 1, 2], "sigmas": [0.4, 0.8, 1.2]}, "cutoff": 5.0},
        "save_fps": False,
    },
    "cmd": {"run_dir": "runs", "identifier": "cli", "seed": 1, "dtype": "float64"},
}


# ``n`` rattled (0.08 Å), strained 32-atom fcc Cu cells with EMT energy (eV), forces (eV/Å), stress (eV/Å^3)
make_cu32 = partial(make_cu_emt, a=3.61, big_every=0, vacancy_every=0, rattle=0.08)


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory with train.extxyz (8), test.extxyz (3 labelled), nolabels.extxyz and config.yaml."""
    root = tmp_path_factory.mktemp("cli")
    ase.io.write(root / "train.extxyz", make_cu32(8, seed=0))
    test = make_cu32(2, seed=5) + make_cu32(1, seed=6, vacancy_every=1, vacancy_site=7)  # structures of different sizes
    ase.io.write(root / "test.extxyz", test)
    ase.io.write(root / "nolabels.extxyz", [Atoms(a.symbols, a.positions, cell=a.cell, pbc=True) for a in test])
    write_config(root / "config.yaml", CONFIG)
    return root


@pytest.fixture()
def in_workdir(workdir):
    """Run the test with ``workdir`` as the current directory (the config's paths are relative)."""
    old = os.getcwd()
    os.chdir(workdir)
    try:
        yield workdir
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def checkpoint(workdir) -> Path:
    """The run directory written by ``amptorch train config.yaml --quiet``."""
    old = os.getcwd()
    os.chdir(workdir)
    try:
        assert main(["train", "config.yaml", "--quiet"]) == 0
    finally:
        os.chdir(old)
    runs = sorted((workdir / "runs" / "checkpoints").glob("*-cli"))
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every module here runs on one torch thread (tests/conftest.py)."""
