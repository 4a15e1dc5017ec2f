"""Fault injection (slow): ``amptorch featurize`` killed with SIGKILL at random points and resumed; the store
always counts exactly the records it holds and ends equal to an uninterrupted run's (benchmarks/faults.py
runs the same with 20 kills and prints the figures)."""

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
