"""The final scoring of a split (``trainer.score``): errors summed chunk by chunk equal the errors of all
predictions at once, and the parity-plot sample is every stride-th structure, at most PARITY_MAX, copied."""

from __future__ import annotations

import numpy as np
import pytest

from amptorch import testing as kit
from amptorch.potential import errors
from amptorch.train import trainer as trainer_module


@pytest.fixture(scope="module")
def potential_and_records(cu_images):
    potential = kit.make_potential("gmp_smooth", "singlenn", ["Cu"], fit_to=cu_images[:4])
    records = potential.descriptor.compute_many(cu_images[:11], derivatives=True, progress=False)
    for record, atoms in zip(records, cu_images[:11], strict=True):
        record.energy, record.forces = atoms.get_potential_energy(), atoms.get_forces()
    return potential, records


@pytest.mark.parametrize("forces", [True, False])
def test_chunked_errors_equal_all_at_once(potential_and_records, monkeypatch, forces):
    potential, records = potential_and_records
    pred, all_labels = potential.evaluate_many(records, forces=forces)
    want = errors(pred, all_labels)
    monkeypatch.setattr(trainer_module, "PARITY_MAX", 4)
    # chunks of 64 would be one chunk: score with chunks of 3 records
    chunks = potential.evaluate_chunks
    monkeypatch.setattr(potential, "evaluate_chunks", lambda recs, forces: chunks(recs, forces, batch_size=3))
    metrics, shown, labels = trainer_module.score(potential, records, forces)
    assert metrics.keys() == want.keys() and metrics["n_structures"] == 11
    for key, value in want.items():
        assert metrics[key] == pytest.approx(value, rel=1e-12)
    assert len(labels) == len(shown["energy"]) == 4  # stride ceil(11 / 4) = 3: structures 0, 3, 6, 9
    for k, lab in zip((0, 3, 6, 9), labels, strict=True):
        assert lab.energy == records[k].energy and shown["energy"][(0, 3, 6, 9).index(k)] == pred["energy"][k]
        if forces:
            np.testing.assert_array_equal(shown["forces"][(0, 3, 6, 9).index(k)], pred["forces"][k])
            assert shown["forces"][(0, 3, 6, 9).index(k)].base is None  # a copy, not a view of the chunk
    assert ("forces" in shown) == forces
