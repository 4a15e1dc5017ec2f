"""The example scripts in examples/, run in their ``--quick`` form.

Each example's ``main(argv)`` is called in this process (no second torch
import) with ``--out`` in a temporary directory; the checks are loose bounds
on the figures it returns, which must hold for any reasonable training, and
the files it promises to write. The three together take about a minute on
two CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    """The example script ``examples/<name>.py`` as a module (its ``__main__`` block does not run)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"amptorch_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, out: Path, *extra: str) -> dict:
    results = load(name).main(["--quick", "--out", str(out), "--threads", "1", *extra])
    saved = json.loads((out / "results.json").read_text())
    assert saved["mode"] == "quick"
    run_dir = Path(results["run_dir"])
    assert run_dir.is_relative_to(out)  # nothing written outside --out
    for f in ("meta.json", "model.pt", "config.json", "metrics.csv"):
        assert (run_dir / f).is_file(), f
    return results


def finite_below(value: float, bound: float) -> bool:
    return math.isfinite(value) and 0.0 <= value < bound


@pytest.mark.parametrize("name", ["cu_md", "pt_slab_adsorbate", "molecule"])
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        load(name).main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "--out" in text


def test_cu_md(tmp_path, capsys):
    res = run("cu_md", tmp_path)
    text = capsys.readouterr().out
    assert "meV/atom" in text and "eV/Å" in text and "drift" in text
    assert finite_below(res["test"]["energy_mae"], 0.03)  # eV/atom
    assert finite_below(res["test"]["forces_mae"], 0.3)  # eV/Å
    nvt, nve = res["nvt"], res["nve"]
    assert nvt["frames_checked"] >= 5 and nve["frames_checked"] >= 5
    assert finite_below(nvt["energy_mae"], 0.03) and finite_below(nvt["forces_mae"], 0.3)
    assert 100.0 < nvt["temperature_mean"] < 600.0
    # NVE: the model's forces are the gradient of its energy, so the total energy barely moves
    assert finite_below(nve["etot_spread"], 0.005)  # eV/atom over 100 fs
    assert math.isfinite(nve["etot_drift"])
    for traj in ("nvt.traj", "nve.traj"):
        assert (tmp_path / traj).stat().st_size > 0


def test_pt_slab_adsorbate(tmp_path, capsys):
    res = run("pt_slab_adsorbate", tmp_path)
    text = capsys.readouterr().out
    assert "meV/atom" in text and "E_b" in text
    assert finite_below(res["test"]["energy_mae"], 0.05)
    assert finite_below(res["test"]["forces_mae"], 0.5)
    assert set(res["sites"]) == {"fcc", "ontop"}
    for site, row in res["sites"].items():
        model, emt = row["model"], row["emt"]
        assert model["converged"] and emt["converged"], site
        # the adsorbate ends where EMT puts it (loose: a quick model)
        assert abs(model["height"] - emt["height"]) < 0.4, site
        assert abs(model["d_pt_o"] - emt["d_pt_o"]) < 0.4, site
        assert finite_below(row["rmsd"], 0.4), site
        assert math.isfinite(model["binding_energy"]) and abs(model["binding_energy"] - emt["binding_energy"]) < 2.0
    assert (tmp_path / "relax_fcc_model.traj").stat().st_size > 0


def test_molecule(tmp_path, capsys):
    res = run("molecule", tmp_path)
    text = capsys.readouterr().out
    assert "meV/atom" in text and "cm^-1" in text
    assert finite_below(res["test"]["energy_mae"], 0.1)
    assert finite_below(res["test"]["forces_mae"], 0.5)
    model, emt = res["relax"]["model"], res["relax"]["emt"]
    assert model["converged"] and emt["converged"]
    assert finite_below(res["distance_rmsd"], 0.1)  # Å
    assert -0.01 < res["emt_excess"] < 0.05  # eV above EMT's minimum
    assert len(model["frequencies"]) == len(emt["frequencies"]) == 3  # H2O: 3N - 6
    assert all(math.isfinite(f) for f in model["frequencies"])
    assert finite_below(res["stretch_mae"], 600.0)  # cm^-1, the O-H stretches
    assert (tmp_path / "relax_model.traj").stat().st_size > 0


def test_active_learning(tmp_path, capsys):
    """MD with the ensemble's calibrated σ selects frames, EMT labels them, the data grows round by round."""
    res = load("active_learning").main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    assert json.loads((tmp_path / "results.json").read_text())["mode"] == "quick"
    assert "meV/atom" in capsys.readouterr().out
    rounds = res["rounds"]
    assert len(rounds) == 3  # the initial model and two retrained ones
    for before, after in zip(rounds, rounds[1:], strict=False):
        assert after["n_train"] + after["n_calib"] == before["n_train"] + before["n_calib"] + before["selected"]
        assert before["selected"] == 0 or before["max_sigma"] > res["threshold"]
    assert res["selected"] > 0
    assert all(finite_below(r["forces_mae"], 0.5) for r in rounds)
    assert Path(res["run_dir"]).is_relative_to(tmp_path)
