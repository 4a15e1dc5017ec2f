"""The mlearn configs written by benchmarks/mlearn.py (examples/mlearn/{El}.yaml) run as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from amptorch.cli import load_yaml, main
from amptorch.descriptors import GMP
from amptorch.train import validate_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {el: REPO / "examples" / "mlearn" / f"{el}.yaml" for el in ("Li", "Mo", "Si", "Ge")}


@pytest.mark.parametrize("element", sorted(CONFIGS))
def test_config_is_valid_and_names_the_shared_training_file(element):
    cfg = load_yaml(CONFIGS[element])
    config = validate_config(cfg)
    assert config.model.name == "singlenn" and config.dataset.fp_scheme == "gmpordernorm"
    assert cfg["dataset"]["raw_data"] == f"../shared/data/mlearn/{element}_train.extxyz"
    assert 0 <= config.dataset.val_split < 0.5 and config.optim.force_coefficient > 0
    gmp = GMP.from_amptorch(cfg["dataset"]["fp_params"])
    assert gmp.smooth_cutoff == "cosine"  # a short hard cutoff would make the energy jump in MD


def test_amptorch_train_runs_a_config_as_written(tmp_path, monkeypatch):
    import ase.io

    source = REPO.parent / "shared" / "data" / "mlearn" / "Li_train.extxyz"
    if not source.is_file():
        pytest.skip(f"{source} not present (it ships with ../shared/data)")
    # the config's own relative path, resolved from a working directory beside a 12-frame copy of the data
    work = tmp_path / "repo"
    data = tmp_path / "shared" / "data" / "mlearn"
    data.mkdir(parents=True)
    work.mkdir()
    ase.io.write(data / "Li_train.extxyz", ase.io.read(source, ":12"))
    monkeypatch.chdir(work)
    assert main(["train", str(CONFIGS["Li"]), "optim.epochs=1", "--quiet"]) == 0
    run_dirs = list((work / "runs" / "mlearn_Li").rglob("model.pt"))
    assert len(run_dirs) == 1


def test_official_split_reader_reads_mlearns_json(tmp_path):
    """benchmarks/mlearn_official.py reads mlearn's test.json (pymatgen structure dicts, outputs in eV and eV/Å)
    without pymatgen: positions, cell, energy and forces as written."""
    import json
    import sys

    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    from mlearn_official import read_test

    cell = [[3.1, 0.0, 0.0], [0.0, 3.2, 0.0], [0.1, 0.0, 3.3]]
    xyz = [[0.0, 0.0, 0.0], [1.5, 1.6, 1.7]]
    forces = [[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]]
    entry = {"structure": {"lattice": {"matrix": cell},
                           "sites": [{"species": [{"element": "Mo", "occu": 1}], "xyz": p} for p in xyz]},
             "outputs": {"energy": -21.5, "forces": forces, "virial_stress": [0] * 6}, "group": "Vacancy"}  # fmt: skip
    path = tmp_path / "test.json"
    path.write_text(json.dumps([entry, entry]))
    frames = read_test(path)
    assert len(frames) == 2 and frames[0].get_chemical_symbols() == ["Mo", "Mo"] and frames[0].pbc.all()
    np.testing.assert_allclose(frames[0].positions, xyz)
    np.testing.assert_allclose(frames[0].cell[:], cell)
    assert frames[1].get_potential_energy() == -21.5
    np.testing.assert_allclose(frames[1].get_forces(), forces)
