"""Fault injection (slow): ``amptorch featurize`` and ``amptorch train`` killed with SIGKILL at random points
and resumed. The store always counts exactly the records it holds and ends equal to an uninterrupted run's; the
resumed training ends with the uninterrupted run's checkpoint (benchmarks/faults.py runs the same with 20 kills
each and prints the figures)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.mark.slow
def test_featurize_killed_and_resumed(tmp_path):
    from faults import run

    figures = run(kills=4, structures=24, batch_size=2, seed=1, folder=str(tmp_path), verbose=False)
    assert figures["kills"] == 4 and figures["records_compared"] >= 24


@pytest.mark.slow
def test_training_killed_and_resumed(tmp_path):
    """``amptorch train`` killed with SIGKILL at random points and resumed (``--resume``) ends with the
    uninterrupted run's model.pt, meta.json metrics and metrics.csv."""
    from faults import run_training_resume

    figures = run_training_resume(kills=4, structures=12, epochs=300, seed=1, folder=str(tmp_path), verbose=False)
    assert figures["train_kills"] >= 1 and figures["max_weight_diff"] <= 1e-12
