"""The CLI under bad paths and faults (cli.py cmd_featurize, cmd_train, cmd_md): one ``error: ...`` line,
exit status 2, and nothing half-made left behind (no stray lock file, empty store, run folder holding only
config.json, or empty trajectory)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import ase.io
import pytest

import amptorch.data.lmdb as lm
from amptorch.cli import main
from amptorch.data import LmdbDataset
from amptorch.testing import make_cu_emt

PARAMS = "MCSHs:\n  orders: [0, 1]\n  sigmas: [0.5, 1.0]\ncutoff: 5.0\nsmooth_cutoff: cosine\n"


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "data.extxyz"
    ase.io.write(path, make_cu_emt(4, seed=3, a=3.61, big_every=0, vacancy_every=0))
    (tmp_path / "params.yaml").write_text(PARAMS)
    return path


def featurize(data, out, *extra) -> int:
    params = data.parent / "params.yaml"
    return main(["featurize", str(data), "--out", str(out), "--params", str(params), "-q", "--batch-size", "2",
                 *extra])  # fmt: skip


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_featurize_out_onto_a_folder_or_a_foreign_file(tmp_path, data, capsys):
    before = sorted(os.listdir(tmp_path))
    folder = tmp_path / "folder"
    folder.mkdir()
    assert featurize(data, folder) == 2
    assert "is a folder" in error_line(capsys)
    text = data.read_text()
    assert featurize(data, data) == 2  # the input file itself
    line = error_line(capsys)
    assert str(data) in line and "not an LMDB file" in line
    assert featurize(data, data, "--overwrite") == 2
    assert "not an LMDB file" in error_line(capsys)
    assert data.read_text() == text
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "folder"]) and not os.listdir(folder)  # no -lock


def test_featurize_resumes_only_onto_the_same_data(tmp_path, data, capsys):
    out = tmp_path / "fps.lmdb"
    assert featurize(data, out) == 0
    assert "wrote 4 of 4" in capsys.readouterr().out
    other = tmp_path / "other.extxyz"
    ase.io.write(other, make_cu_emt(4, seed=4, a=3.61, big_every=0, vacancy_every=0))
    assert featurize(other, out) == 2
    line = error_line(capsys)
    assert "other inputs" in line and "--overwrite" in line
    assert featurize(other, out, "--overwrite") == 0
    assert "wrote 4 of 4" in capsys.readouterr().out
    assert LmdbDataset(out)[0].energy == ase.io.read(other, 0).get_potential_energy()
    assert not os.path.exists(f"{out}-lock")


def test_featurize_full_disk_leaves_nothing(tmp_path, data, capsys, monkeypatch):
    monkeypatch.setattr(lm, "_commit", enospc)
    out = tmp_path / "fps.lmdb"
    assert featurize(data, out) == 2
    line = error_line(capsys)
    assert str(out) in line and "No space left on device" in line and "nothing was kept" in line
    assert not out.exists() and not os.path.exists(f"{out}-lock")


def test_two_concurrent_featurize_runs(tmp_path, data):
    """Two `amptorch featurize` processes into one file: the store ends whole and consistent, whichever won."""
    out = tmp_path / "fps.lmdb"
    cmd = [sys.executable, "-m", "amptorch.cli", "featurize", str(data), "--out", str(out), "--params",
           str(tmp_path / "params.yaml"), "-q", "--batch-size", "1", "--workers", "1"]  # fmt: skip
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert all(rc in (0, 2) for rc, _ in results), results
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        if rc == 2:
            assert err.strip().startswith("error: ") and "another process is writing it" in err, err
    ds = LmdbDataset(out)
    assert ds.metadata["count"] == len(ds) == 4
    assert not os.path.exists(f"{out}-lock")


@pytest.fixture()
def train_config(tmp_path, data):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "model: {name: singlenn, num_layers: 1, num_nodes: 4}\n"
        "optim: {force_coefficient: 0.0, lr: 0.01, batch_size: 2, epochs: 2}\n"
        f"dataset: {{raw_data: {data}, fp_params: {{MCSHs: {{orders: [0], sigmas: [0.5]}}, cutoff: 5.0, "
        "smooth_cutoff: cosine}, save_fps: false}\n"
        f"cmd: {{run_dir: {tmp_path / 'runs'}, identifier: x, seed: 1, verbose: false}}\n"
    )
    return cfg


def test_train_full_disk_removes_the_half_made_run(tmp_path, train_config, capsys, monkeypatch):
    from amptorch.potential import TrainedPotential

    monkeypatch.setattr(TrainedPotential, "save", enospc)  # the first best weights cannot be written
    assert main(["train", str(train_config), "-q"]) == 2
    line = error_line(capsys)
    assert "No space left on device" in line and "cmd.run_dir" in line
    assert not (tmp_path / "runs").exists()  # created by this run, holding only config.json: removed


def test_train_failure_keeps_earlier_runs(tmp_path, train_config, capsys, monkeypatch):
    earlier = tmp_path / "runs" / "checkpoints" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "config.json").write_text("{}")
    import amptorch.train.trainer as trainer

    monkeypatch.setattr(trainer, "write_json", enospc)  # config.json itself cannot be written
    assert main(["train", str(train_config), "-q"]) == 2
    assert "No space left on device" in error_line(capsys)
    assert os.listdir(tmp_path / "runs" / "checkpoints") == ["earlier"]


def test_md_failure_leaves_no_empty_trajectory(tmp_path, tiny_run, capsys, monkeypatch):
    from ase.io.trajectory import TrajectoryWriter

    start = tmp_path / "start.xyz"
    ase.io.write(start, make_cu_emt(1, seed=2, a=3.61, big_every=0, vacancy_every=0)[0])
    monkeypatch.setattr(TrajectoryWriter, "write", enospc)
    out = tmp_path / "md.traj"
    assert main(["md", str(tiny_run), str(start), "--steps", "2", "--out", str(out), "-q"]) == 2
    line = error_line(capsys)
    assert "md --out" in line and "No space left on device" in line and "after 0 frames" in line
    assert not out.exists()
    monkeypatch.undo()
    assert main(["md", str(tiny_run), str(start), "--steps", "2", "--interval", "1", "--out", str(out), "-q"]) == 0
    assert len(ase.io.read(out, ":")) == 3
