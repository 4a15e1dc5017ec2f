"""Fault injection: ``amptorch featurize`` killed with SIGKILL at random points, resumed each time.

    python benchmarks/faults.py [--kills 20] [--structures 96] [--batch-size 2] [--seed 0] [--train-kills 5]
                                [--resume-kills 20] [--only-resume]

Writes EMT-labelled Cu cells to an extxyz file, runs ``amptorch featurize`` once uninterrupted (the
reference store), then starts it again and again on another store, each time killing it (``kill -9``)
after a random delay (from 0.8 of the start-up time to the end of the writing left), until ``--kills`` kills. After
every kill the store is checked: its metadata counts exactly the records present, and every record
present equals the reference's, array by array. A run that finishes before its kill (or is killed after
its last commit) is checked whole and the store is deleted (the next run starts again from nothing).
After the last kill the store is resumed to the end and compared with the reference record by record.
Prints the figures (kills, kills that landed while records were being written, resumes, records compared,
time). Then ``amptorch train`` is killed ``--train-kills`` times at random points: every run folder
that holds weights must load and predict finite energies and forces. Last, one training run is killed
``--resume-kills`` times at random points and resumed (``--resume``) after each kill: the final ``model.pt``,
``meta.json`` metrics and ``metrics.csv`` must equal an uninterrupted run's (``--only-resume``: that part alone).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PARAMS = "MCSHs:\n  orders: [0, 1, 2, 3]\n  sigmas: [0.2, 0.69, 1.1, 1.66, 2.66]\n"


def _cells(n: int, seed: int) -> list:
    """The fault runs' data: ``n`` EMT-labelled 32-atom Cu cells, no vacancies."""
    from amptorch.testing import make_cu_emt

    return make_cu_emt(n, seed=seed, a=3.61, big_every=0, vacancy_every=0)


def _command(data: Path, out: Path, params: Path, batch_size: int) -> list[str]:
    return [sys.executable, "-m", "amptorch.cli", "featurize", str(data), "--out", str(out), "--params",
            str(params), "--batch-size", str(batch_size), "--workers", "1", "-q"]  # fmt: skip


def _records(path: Path) -> tuple[dict, dict[int, dict[str, np.ndarray]]]:
    """The metadata and the records present (index -> arrays) of a store, read without keeping it open."""
    import lmdb

    from amptorch.data.lmdb import METADATA_KEY, check_lmdb_file, decode_record, read_metadata

    check_lmdb_file(path)
    meta = read_metadata(path)
    from amptorch.data.lmdb import _drop_reader

    _drop_reader(str(path))
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            out = {int(bytes(k)): decode_record(v, key=bytes(k).decode(), checksum=True).to_arrays()
                   for k, v in txn.cursor() if bytes(k) != METADATA_KEY}  # fmt: skip
    finally:
        env.close()
    return meta, out


def _compare(records: dict, reference: dict, where: str) -> int:
    """Number of records compared; AssertionError naming the first difference."""
    for k, arrays in records.items():
        ref = reference[k]
        assert arrays.keys() == ref.keys(), f"{where}: record {k} fields {sorted(arrays)} != {sorted(ref)}"
        for name, a in arrays.items():
            assert a.dtype == ref[name].dtype and np.array_equal(a, ref[name]), f"{where}: record {k} field {name}"
    return len(records)


def run(kills: int = 20, structures: int = 96, batch_size: int = 2, seed: int = 0, folder: str | None = None,
        verbose: bool = True) -> dict:  # fmt: skip
    """Run the kill / resume cycle; returns the figures (raises AssertionError on any difference)."""
    import ase.io


    say = print if verbose else (lambda *a, **k: None)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tmp = Path(tmp)
        data, params = tmp / "data.extxyz", tmp / "params.yaml"
        ase.io.write(data, _cells(structures, seed))
        params.write_text(PARAMS)
        t0 = time.perf_counter()
        ref_path = tmp / "reference.lmdb"
        subprocess.run(_command(data, ref_path, params, batch_size), check=True, capture_output=True)
        t_ref = time.perf_counter() - t0
        ref_meta, reference = _records(ref_path)
        assert ref_meta["count"] == structures == len(reference)
        say(f"reference: {structures} structures ({ref_meta['n_features']} features, derivatives) "
            f"in {t_ref:.2f} s, batches of {batch_size}")  # fmt: skip

        t0 = time.perf_counter()  # a run onto the finished store: start-up (imports, reading, checks) only
        subprocess.run(_command(data, ref_path, params, batch_size), check=True, capture_output=True)
        t_startup = time.perf_counter() - t0
        say(f"start-up (a run with nothing to write): {t_startup:.2f} s")

        rng = np.random.default_rng(seed)
        out = tmp / "killed.lmdb"
        n_kills = mid_write = resumes = finished = compared = 0
        while n_kills < kills:
            before = _records(out)[0]["count"] if out.exists() and out.stat().st_size else None
            resumes += before is not None
            proc = subprocess.Popen(_command(data, out, params, batch_size), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)  # fmt: skip
            # anywhere from late in start-up to the end of the writing still to do
            left = (structures - (before or 0)) / structures * max(t_ref - t_startup, 0.1)
            delay = float(rng.uniform(0.8 * t_startup, t_startup + left))
            try:
                _, err = proc.communicate(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                n_kills += 1
                if out.exists() and out.stat().st_size:
                    meta, recs = _records(out)
                    assert meta["count"] == len(recs), f"kill {n_kills}: count {meta['count']}, records {len(recs)}"
                    assert meta["inputs_sha256"] == ref_meta["inputs_sha256"]
                    assert sorted(recs) == list(range(len(recs))), f"kill {n_kills}: records {sorted(recs)}"
                    compared += _compare(recs, reference, f"kill {n_kills}")
                    mid_write += meta["count"] > (before or 0)
                    say(f"kill {n_kills:2d} after {delay:5.2f} s: {meta['count']:3d} of {structures} records")
                    if meta["count"] == structures:  # killed after its last commit: whole, start again
                        finished += 1
                        out.unlink()
                else:
                    say(f"kill {n_kills:2d} after {delay:5.2f} s: no store yet")
                continue
            assert proc.returncode == 0, f"featurize exited {proc.returncode}: {err.decode()[-500:]}"
            meta, recs = _records(out)
            assert meta["count"] == structures == len(recs)
            compared += _compare(recs, reference, "finished run")
            finished += 1
            say(f"finished before its kill ({delay:5.2f} s): whole store compared, starting again")
            out.unlink()
        resumes += out.exists() and out.stat().st_size > 0
        subprocess.run(_command(data, out, params, batch_size), check=True, capture_output=True)
        meta, recs = _records(out)
        assert meta["count"] == structures == len(recs) and sorted(recs) == list(range(structures))
        assert {k: v for k, v in meta.items()} == ref_meta, "metadata differs from the reference"
        compared += _compare(recs, reference, "final store")
        leftovers = sorted(p.name for p in tmp.iterdir() if p.name.endswith("-lock"))
        assert not leftovers, leftovers
    figures = {"kills": n_kills, "kills_while_writing": mid_write, "resumes": resumes, "finished_runs": finished,
               "records_compared": compared, "reference_s": round(t_ref, 2),
               "total_s": round(time.perf_counter() - t_start, 1)}  # fmt: skip
    say(f"{n_kills} kills ({mid_write} while records were being written), {resumes} resumes, {finished} runs "
        f"finished before their kill, {compared} records compared with the reference (all equal), "
        f"final store equal record by record; {figures['total_s']} s")  # fmt: skip
    return figures


TRAIN_CONFIG = """\
model: {{name: singlenn, num_layers: 1, num_nodes: 8}}
optim: {{force_coefficient: 0.04, lr: 0.01, batch_size: 4, epochs: {epochs}}}
dataset: {{raw_data: {data}, fp_params: {{MCSHs: {{orders: [0, 1], sigmas: [0.5, 1.0]}}, cutoff: 5.0,
  smooth_cutoff: cosine}}, save_fps: false}}
cmd: {{run_dir: {runs}, identifier: kill{k}, seed: 1, verbose: false}}
"""


def run_training(kills: int = 5, structures: int = 16, epochs: int = 400, seed: int = 0, folder: str | None = None,
                 verbose: bool = True) -> dict:  # fmt: skip
    """``amptorch train`` killed with SIGKILL after a random delay, ``kills`` times: every run folder that
    holds weights loads (``TrainedPotential.load``) and predicts finite energies and forces."""
    import ase.io

    from amptorch.potential import TrainedPotential

    say = print if verbose else (lambda *a, **k: None)
    t_start = time.perf_counter()
    loaded = empty = 0
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tmp = Path(tmp)
        data = tmp / "train.extxyz"
        images = _cells(structures, seed)
        ase.io.write(data, images)
        rng = np.random.default_rng(seed)
        for k in range(kills):
            cfg = tmp / f"config{k}.yaml"
            cfg.write_text(TRAIN_CONFIG.format(epochs=epochs, data=data, runs=tmp / "runs", k=k))
            proc = subprocess.Popen([sys.executable, "-m", "amptorch.cli", "train", str(cfg), "-q"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            delay = float(rng.uniform(2.0, 12.0))
            try:
                _, err = proc.communicate(timeout=delay)
                raise AssertionError(f"training finished before its kill ({delay:.1f} s): raise epochs")
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
            runs = sorted((tmp / "runs" / "checkpoints").glob(f"*kill{k}*"))
            if not runs or not (runs[-1] / "model.pt").exists():
                empty += 1
                say(f"train kill {k + 1} after {delay:5.2f} s: no weights saved yet")
                continue
            pot = TrainedPotential.load(runs[-1])
            pred = pot.predict(images[:2])
            assert all(np.isfinite(e) for e in pred["energy"]), pred["energy"]
            assert all(np.isfinite(f).all() for f in pred["forces"])
            loaded += 1
            say(f"train kill {k + 1} after {delay:5.2f} s: best checkpoint loads and predicts")
    figures = {"train_kills": kills, "checkpoints_loaded": loaded, "killed_before_any_weights": empty,
               "train_total_s": round(time.perf_counter() - t_start, 1)}  # fmt: skip
    say(f"training: {kills} kills, {loaded} best checkpoints loaded and predicted finite energies and forces, "
        f"{empty} killed before any weights were saved; {figures['train_total_s']} s")  # fmt: skip
    return figures


def _run_folder(runs: Path, identifier: str) -> Path | None:
    found = sorted((runs / "checkpoints").glob(f"*-{identifier}*")) if (runs / "checkpoints").is_dir() else []
    return found[-1] if found else None


def _csv_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "dur"} for row in csv.DictReader(fh)]


def run_training_resume(kills: int = 20, structures: int = 16, epochs: int = 1000, seed: int = 0,
                        folder: str | None = None, verbose: bool = True) -> dict:  # fmt: skip
    """``amptorch train`` killed with SIGKILL at random points ``kills`` times and resumed each time
    (``--resume RUN_DIR``; a run killed before its first epoch ended is started again), then the last resume
    runs to the end: its ``model.pt``, ``meta.json`` metrics and ``metrics.csv`` must equal an uninterrupted
    run's. Returns the figures (kills, resumes, restarts, max weight difference, time)."""
    import ase.io
    import torch

    from amptorch.potential import TrainedPotential

    say = print if verbose else (lambda *a, **k: None)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tmp = Path(tmp)
        data, runs = tmp / "train.extxyz", tmp / "runs"
        ase.io.write(data, _cells(structures, seed))

        def start(name: str, resume: Path | None = None) -> subprocess.Popen:
            cfg = tmp / f"{name}.yaml"
            cfg.write_text(TRAIN_CONFIG.format(epochs=epochs, data=data, runs=runs, k=0).replace("kill0", name))
            extra = ["--resume", str(resume)] if resume is not None else []
            return subprocess.Popen([sys.executable, "-m", "amptorch.cli", "train", str(cfg), "-q", *extra],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip

        # the uninterrupted reference: its time to the first epoch's end and in all set the kill delays
        t0 = time.perf_counter()
        proc, first = start("reference"), None
        while proc.poll() is None:
            folder_ = _run_folder(runs, "reference")
            if first is None and folder_ is not None and (folder_ / "metrics.csv").exists():
                first = time.perf_counter() - t0
            time.sleep(0.02)
        assert proc.returncode == 0, proc.stderr.read().decode()
        total = time.perf_counter() - t0
        first = first if first is not None else total
        reference = _run_folder(runs, "reference")
        say(f"reference: {epochs} epochs in {total:.1f} s (first epoch ended at {first:.1f} s)")

        rng = np.random.default_rng(seed)
        n_kills = resumes = restarts = finished = progressed = last_done = 0
        run_dir: Path | None = None
        while True:
            proc = start("killed", run_dir)
            resumes += run_dir is not None
            delay = float(first + rng.uniform(-0.3 * first, 1.5 * (total - first) / max(kills, 1)))
            try:
                _, err = proc.communicate(timeout=delay if n_kills < kills else None)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                n_kills += 1
                run_dir = run_dir or _run_folder(runs, "killed")
                state = None if run_dir is None else run_dir / "resume.pt"
                meta = None if run_dir is None else run_dir / "meta.json"
                if meta is not None and meta.exists() and "metrics" in json.loads(meta.read_text()):
                    finished += 1  # killed after its end was written (resume.pt deleted): a finished run
                    say(f"kill {n_kills:2d} after {delay:5.2f} s: after the run had finished")
                    break
                if state is not None and state.exists():
                    done = torch.load(state, weights_only=True)["epoch"]
                    progressed += done > last_done  # the killed process had finished epochs of its own
                    last_done = done
                    say(f"kill {n_kills:2d} after {delay:5.2f} s: {done:3d} of {epochs} epochs done, resuming")
                else:  # killed before its first epoch ended: nothing to resume, start again
                    if run_dir is not None:
                        import shutil

                        shutil.rmtree(run_dir)
                    run_dir = None
                    restarts += 1
                    say(f"kill {n_kills:2d} after {delay:5.2f} s: before the first epoch ended, starting again")
                continue
            assert proc.returncode == 0, err.decode()
            finished += 1
            run_dir = run_dir or _run_folder(runs, "killed")
            break
        assert not (run_dir / "resume.pt").exists(), "a finished run keeps no resume state"
        ref_pot, pot = TrainedPotential.load(reference), TrainedPotential.load(run_dir)
        pairs = zip(ref_pot.model.state_dict().values(), pot.model.state_dict().values(), strict=True)
        diffs = [float((a - b).abs().max()) for a, b in pairs]
        max_diff = max(diffs)
        assert max_diff <= 1e-12, f"final weights differ by {max_diff:.3g}"
        ref_m, m = ref_pot.meta["metrics"], pot.meta["metrics"]
        assert ref_m["best_epoch"] == m["best_epoch"], (ref_m["best_epoch"], m["best_epoch"])
        metric_diff = max(abs(ref_m[s][k] - m[s][k]) / max(abs(ref_m[s][k]), 1e-300)
                          for s in ("train", "valid") if s in ref_m for k in ref_m[s]
                          if isinstance(ref_m[s][k], float))  # fmt: skip
        assert metric_diff <= 1e-10, f"meta.json metrics differ (relative {metric_diff:.3g})"
        ref_rows, rows = _csv_rows(reference / "metrics.csv"), _csv_rows(run_dir / "metrics.csv")
        assert len(rows) == len(ref_rows) == epochs, (len(rows), len(ref_rows))
        for a, b in zip(ref_rows, rows, strict=True):
            for key, value in a.items():
                same = b[key] == value or abs(float(b[key]) - float(value)) <= 1e-10 * max(abs(float(value)), 1e-300)
                assert same, f"metrics.csv epoch {a['epoch']} {key}: {b[key]} != {value}"
    figures = {"train_kills": n_kills, "kills_after_new_epochs": progressed, "restarts": restarts,
               "train_resumes": resumes, "finished": finished, "best_epoch": m["best_epoch"],
               "max_weight_diff": max_diff,
               "max_metric_rel_diff": metric_diff, "reference_s": round(total, 1),
               "resume_total_s": round(time.perf_counter() - t_start, 1)}  # fmt: skip
    say(f"training resume: {n_kills} kills ({progressed} after the killed process had finished epochs of its own, "
        f"{restarts} before any epoch of a fresh run had ended: started again), {resumes} resumes; final model.pt "
        f"max weight difference {max_diff:.3g}, meta.json metrics relative difference {metric_diff:.3g}, "
        f"best epoch {m['best_epoch']} in both, metrics.csv equal; "
        f"reference {total:.1f} s, {figures['resume_total_s']} s in all")  # fmt: skip
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--structures", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-kills", type=int, default=5, help="kills of `amptorch train` (0: none)")
    p.add_argument("--resume-kills", type=int, default=20, help="kills of `amptorch train`, each resumed (0: none)")
    p.add_argument("--only-resume", action="store_true", help="only the training kill / resume cycle")
    a = p.parse_args()
    if not a.only_resume:
        run(a.kills, a.structures, a.batch_size, a.seed)
        if a.train_kills:
            run_training(a.train_kills, seed=a.seed)
    if a.resume_kills:
        run_training_resume(a.resume_kills, seed=a.seed)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
