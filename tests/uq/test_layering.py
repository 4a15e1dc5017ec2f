"""uq sits between potential and train: it loads neither skorch nor amptorch.train, and potential loads it lazily."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return set(out.stdout.split())


def test_uq_imports_no_training_code():
    mods = loaded_after("import amptorch.uq")
    assert "amptorch.uq.state" in mods
    assert not {m for m in mods if m.startswith(("skorch", "amptorch.train"))}


def test_potential_and_a_plain_calculator_do_not_load_uq():
    mods = loaded_after(
        "from amptorch.testing import make_potential, fcc_bulk\n"
        "from amptorch.potential import AmpTorchCalculator\n"
        "pot = make_potential('gmp')\n"
        "atoms = fcc_bulk()\n"
        "atoms.calc = AmpTorchCalculator(pot)\n"
        "atoms.get_forces()\n"
        "pot.save(__import__('tempfile').mkdtemp())"
    )
    assert not {m for m in mods if m.startswith("amptorch.uq")}
