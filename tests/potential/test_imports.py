"""The deployable potential imports no trainer: a deployed model never loads skorch."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["amptorch.calculator", "amptorch.potential", "amptorch.potential.checkpoint"])
def test_potential_does_not_import_the_trainer(module):
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m == 'skorch' or m.startswith(('skorch.', 'amptorch.train')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} loaded {out}"


def test_the_check_can_fail():
    """The same probe sees skorch when the trainer is imported (so the test above can fail)."""
    code = "import sys, amptorch.train\nprint('skorch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "True"
