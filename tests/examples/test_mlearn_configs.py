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
    assert config.dataset.val_split > 0 and config.optim.force_coefficient > 0
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
