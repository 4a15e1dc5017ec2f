"""UQ state in the checkpoint directory: round trip without pickle; damaged files are one-line errors."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
import torch

from amptorch.data import featurize
from amptorch.errors import InputError
from amptorch.potential import TrainedPotential
from amptorch.testing import make_cu_emt, make_potential
from amptorch.uq import Ensemble, LatentDistance
from amptorch.uq import load as uq_load

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images():
    return make_cu_emt(6, seed=4, a=3.61, big_every=0, vacancy_every=0)


@pytest.fixture()
def saved(images, tmp_path):
    """A potential with an ensemble, stored latents, 7 dropout samples and an ensemble calibration, saved."""
    members = [make_potential("gmp", "singlenn", ("Cu",), fit_to=images, seed=s, dropout=True, dropout_rate=0.2)
               for s in range(3)]  # fmt: skip
    pot = members[0]
    records = featurize(images, pot.descriptor, progress=False)
    state = pot.uq
    state.ensemble = Ensemble([m.model.network for m in members], seeds=[0, 1, 2], bootstrap=True)
    state.latent = LatentDistance(k=2, aggregate="max").fit(pot, records[:4])
    state.dropout_samples = 7
    state.calibrate(records[4:] * 5, "ensemble", coverage=0.8)  # 10 points are enough for 0.8
    pot.save(tmp_path / "ck")
    return pot, tmp_path / "ck", records


def test_round_trip(saved, images):
    pot, path, records = saved
    names = sorted(p.name for p in path.iterdir())
    assert names == ["ensemble.pt", "latent_numbers.npy", "latent_vectors.npy", "meta.json", "model.pt", "uq.json"]
    state = uq_load(path)
    loaded = state.potential
    assert isinstance(loaded, TrainedPotential) and loaded.uq is state
    assert state.ensemble.seeds == [0, 1, 2] and state.ensemble.bootstrap
    assert state.dropout_samples == 7 and state.latent.aggregate == "max" and state.latent.k == 2
    np.testing.assert_array_equal(state.latent.latents, pot.uq.latent.latents)
    assert sorted(state.calibrations) == ["ensemble"]
    assert state.calibrations["ensemble"].energy.quantile == pot.uq.calibrations["ensemble"].energy.quantile
    for method in ("ensemble", "latent"):
        a, b = pot.uq.predict(images, method), state.predict(images, method)
        np.testing.assert_allclose(b["energy"], a["energy"], rtol=1e-12)
        np.testing.assert_allclose(b["energy_uncertainty"], a["energy_uncertainty"], rtol=1e-12)
        assert b["calibrated"] is (method == "ensemble")
    # every array file reads without pickle
    np.load(path / "latent_vectors.npy", allow_pickle=False)
    torch.load(path / "ensemble.pt", weights_only=True)
    # saved again elsewhere from a loaded potential that never touched .uq: the UQ files come along
    again = TrainedPotential.load(path)
    again.save(path.parent / "copy")
    assert (path.parent / "copy" / "ensemble.pt").is_file()
    assert uq_load(path.parent / "copy").calibrations["ensemble"].energy.n == 10


def test_no_uq_files_is_an_empty_state(images, tmp_path):
    pot = make_potential("gmp", "singlenn", ("Cu",), fit_to=images)
    pot.save(tmp_path / "plain")
    assert not (tmp_path / "plain" / "uq.json").exists()
    state = TrainedPotential.load(tmp_path / "plain").uq
    assert state.empty and state.available() == []


def _damage_json(path, edit):
    info = json.loads((path / "uq.json").read_text())
    edit(info)
    (path / "uq.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "uq.json").write_text("{oops"), "uq.json: not valid JSON"),
        (lambda p: _damage_json(p, lambda i: i.update(format=9)), "uq.json format: got 9; expected 1"),
        (lambda p: _damage_json(p, lambda i: i.update(dropout_samples=1)), "dropout_samples: got 1"),
        (lambda p: (p / "ensemble.pt").unlink(), "ensemble.pt: missing"),
        (lambda p: (p / "ensemble.pt").write_bytes(b"PK\x03\x04 truncated"), "ensemble.pt: cannot be read"),
        (lambda p: (p / "latent_vectors.npy").unlink(), "latent_vectors.npy: missing"),
        (lambda p: np.save(p / "latent_numbers.npy", np.full(len(np.load(p / "latent_numbers.npy")), 200)),
         "latent_numbers: values outside 0..118"),
        (lambda p: _damage_json(p, lambda i: i["ensemble"].update(members=4)),
         r"ensemble.pt: body.0.weight has shape \(3, 8, 6\); expected \(4, 8, 6\)"),
        (lambda p: _damage_json(p, lambda i: i["latent"].update(k=-1)),
         "uq.json latent.k: got -1; expected an integer ≥ 1"),
        (lambda p: _damage_json(p, lambda i: i["calibration"]["ensemble"]["energy"].update(quantile="x")),
         "calibration.ensemble.energy: damaged"),
    ],
)  # fmt: skip
def test_damaged_files_are_one_line_errors(saved, damage, message):
    _, path, _ = saved
    damage(path)
    with pytest.raises(InputError, match=message) as err:
        uq_load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_pickled_payloads_are_refused_unrun(saved):
    """A pickle that would run code on load is refused by both readers (weights_only / allow_pickle=False)."""
    _, path, _ = saved

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran')",))

    buf = io.BytesIO()
    torch.save({"network.body.0.weight": Boom()}, buf)
    (path / "ensemble.pt").write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="ensemble.pt: cannot be read"):
        uq_load(path)
    np.save(path / "ensemble.pt", np.zeros(1))  # back to something torch rejects too, then the arrays
    with open(path / "latent_vectors.npy", "wb") as fh:
        np.save(fh, np.array([Boom()], dtype=object), allow_pickle=True)
    _damage_json(path, lambda i: i.update(ensemble=None))
    with pytest.raises(InputError, match="latent_vectors.npy: cannot be read"):
        uq_load(path)
    assert pickle  # the module is the attack's tool, never the reader's
