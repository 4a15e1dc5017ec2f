"""``amptorch predict --out``: the output format is checked before any work, and a failed write
leaves no partial file (cli.py cmd_predict)."""

from __future__ import annotations

import ase.io
import pytest

import amptorch.cli as cli
from amptorch.cli import main
from amptorch.testing import make_cu_emt


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "data.extxyz"
    ase.io.write(path, make_cu_emt(2, seed=3, a=3.61, big_every=0, vacancy_every=0))
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("name, part", [("x.weird", "'weird'"), ("noextension", "this")])
def test_unknown_format_is_refused_before_loading_anything(tmp_path, data, capsys, name, part):
    # the checkpoint does not even exist: the output name is checked first
    out = tmp_path / name
    assert main(["predict", str(tmp_path / "missing"), str(data), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert f"predict --out {out}" in line and part in line and "out.extxyz" in line
    assert not out.exists()


def test_missing_output_folder(tmp_path, data, capsys):
    out = tmp_path / "nope" / "x.extxyz"
    assert main(["predict", str(tmp_path / "missing"), str(data), "--out", str(out)]) == 2
    assert "no such folder" in error_line(capsys)


def test_single_structure_format_with_many_structures(tiny_run, tmp_path, data, capsys):
    out = tmp_path / "POSCAR"
    assert main(["predict", str(tiny_run), str(data), "--out", str(out), "--quiet"]) == 2
    line = error_line(capsys)
    assert "vasp format holds one structure" in line and "has 2" in line
    assert not out.exists()


def test_failed_write_leaves_no_partial_file(tiny_run, tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "pred.extxyz"
    real = cli.write_structures

    def half_then_fail(path, images, format=None):
        real(path, images[:1], format=format)  # a partial file on disk...
        raise OSError("disk full")  # ...then the write fails

    monkeypatch.setattr(cli, "write_structures", half_then_fail)
    assert main(["predict", str(tiny_run), str(data), "--out", str(out), "--quiet"]) == 2
    assert "disk full" in error_line(capsys)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.extxyz"]  # no temporary left either


def test_good_output_is_written(tiny_run, tmp_path, data, capsys):
    out = tmp_path / "pred.traj"
    assert main(["predict", str(tiny_run), str(data), "--out", str(out), "--quiet"]) == 0
    got = ase.io.read(out, ":")
    assert len(got) == 2 and all(a.get_potential_energy() == a.get_potential_energy() for a in got)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
