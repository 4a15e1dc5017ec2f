"""Helpers for the hardening tests: bad inputs end in one clear InputError line, never a hang or a crash.

``isolated`` runs a snippet in a fresh interpreter with a timeout, for the inputs that used to hang,
exhaust memory or kill the process (SIGFPE): the test then fails on the timeout or exit signal instead
of taking the test run down with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from amptorch.errors import InputError
from amptorch.testing import make_cu_emt

RUNNER = """
import json, sys
from amptorch.errors import InputError
try:
{body}
except InputError as err:
    print(json.dumps({{"type": type(err).__name__, "message": str(err)}}))
else:
    print(json.dumps({{"type": None, "message": ""}}))
"""


def isolated(code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a new interpreter (``timeout`` s): {"type": the InputError class or None, "message"}."""
    script = RUNNER.format(body=textwrap.indent(textwrap.dedent(code), "    "))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"exit status {res.returncode}: {res.stderr[-2000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def one_line(err: InputError | str, *parts: str) -> str:
    """The error's text, checked to be one line holding every one of ``parts``."""
    msg = str(err)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A checkpoint directory trained for 2 epochs on 4 Cu32 cells (SingleNN 2x8, 4 GMP features)."""
    from amptorch.train import AtomsTrainer

    root = tmp_path_factory.mktemp("tiny_run")
    images = make_cu_emt(4, seed=0, a=3.61, big_every=0, vacancy_every=0)
    cfg = {
        "model": {"name": "singlenn", "num_layers": 2, "num_nodes": 8},
        "optim": {"force_coefficient": 0.1, "lr": 1e-2, "batch_size": 2, "epochs": 2},
        "dataset": {
            "raw_data": images,
            "fp_params": {"MCSHs": {"orders": [0, 1], "sigmas": [0.5, 1.0]}, "cutoff": 5.0, "smooth_cutoff": "cosine"},
            "save_fps": False,
        },
        "cmd": {"run_dir": str(root), "identifier": "tiny", "seed": 1, "verbose": False},
    }
    trainer = AtomsTrainer(cfg)
    trainer.train()
    return Path(trainer.run_dir)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
