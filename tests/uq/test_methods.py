"""Ensembles, MC dropout and latent distance on untrained potentials (no training: fast and exact)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from amptorch.data import featurize
from amptorch.errors import InputError
from amptorch.testing import fcc_alloy, fcc_bulk, make_cu_emt, make_potential, strained
from amptorch.uq import Ensemble, LatentDistance, MCDropout
from amptorch.uq.dropout import dropout_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cu():
    return make_cu_emt(5, seed=3, a=3.61, big_every=0, vacancy_every=0)


@pytest.fixture(scope="module")
def alloys():
    return [fcc_alloy(("Cu", "Ni"), seed=s) for s in range(3)]


def with_network(pot, network):
    """The potential with another network (same scaler tables and baseline): one member on its own."""
    one = copy.copy(pot)
    one.model = copy.deepcopy(pot.model)
    one.model.network = network
    return one


@pytest.mark.parametrize("model, elements", [("singlenn", ("Cu",)), ("bpnn", ("Cu", "Ni"))])
def test_ensemble_batched_pass_equals_members_one_by_one(model, elements, cu, alloys):
    images = cu if model == "singlenn" else alloys
    members = [make_potential("gmp", model, elements, fit_to=images, seed=s) for s in range(4)]
    pot = members[0]
    ens = Ensemble([m.model.network for m in members], seeds=range(4))
    records = featurize(images, pot.descriptor, strain=True, with_labels=False, progress=False)
    res = ens.evaluate(pot, records, forces=True, stress=True)
    for m, member in enumerate(members):
        one = with_network(pot, member.model.network).evaluate(records, forces=True, stress=True)
        np.testing.assert_allclose(res["energy"][m], one["energy"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(res["forces"][m], one["forces"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(res["stress"][m], one["stress"], rtol=1e-10, atol=1e-12)
    out = ens.predict(pot, records)
    np.testing.assert_allclose(out["energy"], res["energy"].mean(0), rtol=1e-12)
    np.testing.assert_allclose([e.sum() for e in out["energies"]], out["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["energy_std"], res["energy"].std(0), rtol=1e-9)
    f_std = np.sqrt(res["forces"].var(0).mean(-1))  # RMS over x, y, z of each component's σ
    np.testing.assert_allclose(np.concatenate(out["forces_std"]), f_std, rtol=1e-9)
    assert out["energy_std"].min() > 0


def test_ensemble_of_identical_members_has_zero_sigma(cu):
    pot = make_potential("gmp", "singlenn", ("Cu",), fit_to=cu)
    ens = Ensemble([copy.deepcopy(pot.model.network) for _ in range(3)])
    out = ens.predict(pot, cu)
    assert np.all(out["energy_std"] == 0.0)
    assert all(np.all(s == 0.0) for s in out["forces_std"])
    plain = pot.predict(cu)
    np.testing.assert_allclose(out["energy"], plain["energy"], rtol=1e-12)


def test_ensemble_refuses_mixed_architectures(cu):
    a = make_potential("gmp", "singlenn", ("Cu",), fit_to=cu)
    b = make_potential("gmp", "singlenn", ("Cu",), fit_to=cu, hidden_layers=[5])
    with pytest.raises(InputError, match="member 1 differs in architecture"):
        Ensemble([a.model.network, b.model.network])
    with pytest.raises(InputError, match="1 member"):
        Ensemble([a.model.network])


@pytest.fixture(scope="module")
def dropout_pot(cu):
    return make_potential("gmp", "singlenn", ("Cu",), fit_to=cu, dropout=True, dropout_rate=0.3)


def test_dropout_copies_equal_separate_passes_with_the_same_masks(dropout_pot, cu):
    """Record each dropout layer's masks in the T-copy pass, replay copy t's rows in a plain pass: same numbers."""
    pot, T = dropout_pot, 4
    records = featurize(cu[:2], pot.descriptor, with_labels=False, progress=False)
    n = sum(r.n_atoms for r in records)
    layers = dropout_layers(pot.model)
    assert len(layers) == 2
    masks: dict = {}

    def record(mod, inp, out) -> None:
        masks[mod] = (out != 0).to(out.dtype)

    hooks = [m.register_forward_hook(record) for m in layers]
    res = MCDropout(samples=T, seed=7).evaluate(pot, records, forces=True)
    for h in hooks:
        h.remove()
    assert all(mask.shape[0] == T * n for mask in masks.values())
    for t in range(T):

        def replay(mod, inp, out, t=t):
            return inp[0] * masks[mod][t * n : (t + 1) * n] / (1 - mod.p)

        hooks = [m.register_forward_hook(replay) for m in layers]
        try:
            one = pot.evaluate(records, forces=True)
        finally:
            for h in hooks:
                h.remove()
        np.testing.assert_allclose(res["energy"][t], one["energy"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(res["forces"][t], one["forces"], rtol=1e-10, atol=1e-12)
    assert not any(m.training for m in pot.model.modules())  # everything back in eval mode


def test_dropout_seeded_and_deterministic_prediction(dropout_pot, cu):
    pot = dropout_pot
    a = MCDropout(samples=20, seed=1).predict(pot, cu[:2])
    b = MCDropout(samples=20, seed=1).predict(pot, cu[:2])
    c = MCDropout(samples=20, seed=2).predict(pot, cu[:2])
    np.testing.assert_array_equal(a["energy_std"], b["energy_std"])
    assert not np.allclose(a["energy_std"], c["energy_std"])
    assert a["energy_std"].min() > 0
    plain = pot.predict(cu[:2])  # the prediction is the plain model's: dropout off
    np.testing.assert_allclose(a["energy"], plain["energy"], rtol=1e-12)
    np.testing.assert_allclose(np.concatenate(a["energies"]), np.concatenate(plain["energies"]), rtol=1e-12)
    np.testing.assert_allclose(np.concatenate(a["forces"]), np.concatenate(plain["forces"]), rtol=1e-12)
    with pytest.raises(InputError, match="expected an integer ≥ 2"):
        MCDropout(samples=1)


def test_latent_sigma_grows_with_distance_from_training_data():
    train = [strained(fcc_bulk("Cu", a=3.61, rattle=0.02, seed=s), np.eye(3) * 0.002 * s) for s in range(6)]
    pot = make_potential("gmp", "singlenn", ("Cu",), fit_to=train)
    lat = LatentDistance(k=3).fit(pot, featurize(train, pot.descriptor, derivatives=False, with_labels=False,
                                                 progress=False))  # fmt: skip
    strains = [0.0, 0.02, 0.05, 0.1, 0.2]
    queries = [strained(fcc_bulk("Cu", a=3.61, rattle=0.02, seed=50), np.eye(3) * e) for e in strains]
    sigma = lat.predict(pot, queries)["energy_std"]
    assert np.all(np.diff(sigma) > 0), sigma
    assert sigma[-1] > 20 * sigma[0]


def test_latent_backends_aggregates_and_memory_bound(alloys):
    pot = make_potential("gmp", "bpnn", ("Cu", "Ni"), fit_to=alloys)
    records = featurize(alloys, pot.descriptor, with_labels=False, progress=False)
    sk = LatentDistance(k=2, index="sklearn").fit(pot, records[:2])
    fa = LatentDistance(k=2, index="faiss").fit(pot, records[:2])
    np.testing.assert_array_equal(sk.latents, fa.latents)
    d_sk, d_fa = sk.evaluate(pot, records[2:])["atom_distance"], fa.evaluate(pot, records[2:])["atom_distance"]
    np.testing.assert_allclose(d_fa, d_sk, rtol=1e-4, atol=1e-6)
    # brute force over the stored latents of the same element
    lat, numbers = sk.batch_latents(pot, records[2:])
    lat, numbers = lat.numpy(), numbers.numpy()
    for i in range(len(numbers)):
        ref = sk.latents[sk.numbers == numbers[i]]
        d = np.sort(np.linalg.norm(ref - lat[i].astype(np.float32), axis=1))[:2].mean()
        assert d_sk[i] == pytest.approx(d, rel=1e-5, abs=1e-7)
    for agg, fn in (("mean", np.mean), ("sum", np.sum), ("max", np.max)):
        m = LatentDistance(k=2, aggregate=agg)
        m.set_latents(sk.latents, sk.numbers)
        res = m.evaluate(pot, records)
        image = np.repeat(np.arange(len(records)), [r.n_atoms for r in records])
        want = [fn(res["atom_distance"][image == b]) for b in range(len(records))]
        np.testing.assert_allclose(res["distance"], want, rtol=1e-12)
    small = LatentDistance(max_atoms=5).fit(pot, records)
    counts = {z: int((small.numbers == z).sum()) for z in (28, 29)}
    assert counts == {28: 5, 29: 5} and small.n_seen == sum(r.n_atoms for r in records)


def test_latent_of_an_inner_layer(cu):
    pot = make_potential("gmp", "singlenn", ("Cu",), fit_to=cu, hidden_layers=[7, 5])
    records = featurize(cu, pot.descriptor, with_labels=False, progress=False)
    inner = LatentDistance(layer=0).fit(pot, records)
    assert inner.latents.shape[1] == 7
    last = LatentDistance(layer=-1).fit(pot, records)
    assert last.latents.shape[1] == 5
    with pytest.raises(InputError, match="layer: got 2; the network has hidden layers 0..1"):
        LatentDistance(layer=2).fit(pot, records)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"k": 0}, "k: got 0"), ({"aggregate": "median"}, "aggregate: got 'median'"),
     ({"index": "annoy"}, "index: got 'annoy'"), ({"max_atoms": 2.5}, "max_atoms: got 2.5")],
)  # fmt: skip
def test_latent_bad_settings(kwargs, message):
    with pytest.raises(InputError, match=message):
        LatentDistance(**kwargs)


def test_asking_for_what_the_checkpoint_cannot_give_is_one_line(cu):
    pot = make_potential("gmp", "singlenn", ("Cu",), fit_to=cu)
    cases = [
        ("latent", "the checkpoint stores no training latents"),
        ("dropout", "the checkpoint's network has no dropout layers"),
        ("ensemble", "the checkpoint holds one network"),
        ("bayes", "uncertainty: got 'bayes'"),
    ]
    for method, message in cases:
        with pytest.raises(InputError, match=message) as err:
            pot.uq.predict(cu, method)
        assert "\n" not in str(err.value)
    pot.uq.latent = LatentDistance().fit(pot, featurize(cu, pot.descriptor, with_labels=False, progress=False))
    with pytest.raises(InputError, match="no calibrated intervals yet; run `amptorch calibrate") as err:
        pot.uq.predict(cu, "latent", calibrated=True)
    raw = pot.uq.predict(cu, "latent")
    assert raw["calibrated"] is False
    np.testing.assert_array_equal(raw["energy_uncertainty"], raw["energy_std"])


def test_faiss_inverted_file_for_large_sets_is_close_to_exact():
    """From 4096 stored latents faiss searches an inverted file (approximate): near the exact distances."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 8))
    ref = (centres[rng.integers(0, 40, 6000)] + 0.3 * rng.normal(size=(6000, 8))).astype(np.float32)
    query = (centres[rng.integers(0, 40, 300)] + 0.3 * rng.normal(size=(300, 8))).astype(np.float32)
    numbers = np.full(6000, 29)
    exact, approx = LatentDistance(k=3, index="sklearn"), LatentDistance(k=3, index="faiss")
    for m in (exact, approx):
        m.set_latents(ref, numbers)
    d_exact = exact.distances(query, np.full(300, 29))
    d_approx = approx.distances(query, np.full(300, 29))
    assert type(approx._index_of(29)[1]).__name__ == "IndexIVFFlat"
    assert np.all(d_approx >= d_exact - 1e-5)  # never nearer than the true neighbours
    assert np.mean(np.isclose(d_approx, d_exact, rtol=1e-4)) > 0.9
    assert np.median(d_approx / d_exact) < 1.0 + 1e-4


def test_latent_subsample_of_a_million_atoms_is_uniform_and_bounded():
    """Streaming 10^6 training atoms keeps max_atoms per element, a uniform sample (priority sampling)."""
    from amptorch.uq.latent import _Reservoir

    keep = _Reservoir(size=2000, seed=0)
    rng = np.random.default_rng(1)
    n, chunk = 1_000_000, 50_000
    for start in range(0, n, chunk):
        index = np.arange(start, start + chunk, dtype=np.float64)
        numbers = np.where(rng.random(chunk) < 0.1, 8, 29)  # 10 % O, 90 % Cu
        keep.add(index[:, None].astype(np.float32), numbers)
        assert all(len(k) <= 2000 for k, _ in keep.kept.values())  # bounded at every step
    latents, numbers = keep.arrays()
    assert latents.shape == (4000, 1) and int((numbers == 8).sum()) == 2000
    for z in (8, 29):
        picked = latents[numbers == z, 0]
        assert len(np.unique(picked)) == 2000  # without replacement
        assert abs(picked.mean() / n - 0.5) < 0.02 and abs(np.median(picked) / n - 0.5) < 0.03


def test_latent_of_an_element_never_stored_searches_all_latents(cu):
    """A SingleNN on GMP describes an unseen element (with a warning): its atoms search every stored latent."""
    pot = make_potential("gmp", "singlenn", ("Cu",), fit_to=cu)
    lat = LatentDistance(k=1).fit(pot, featurize(cu, pot.descriptor, with_labels=False, progress=False))
    alloy = fcc_alloy(("Cu", "Ni"), seed=1)
    with pytest.warns(UserWarning, match="not in the training data"):  # the element policy, as predict's
        out = lat.predict(pot, [alloy])
    latents, numbers = lat.batch_latents(pot, featurize([alloy], pot.descriptor, with_labels=False, progress=False))
    ni = np.flatnonzero(numbers.numpy() == 28)
    assert len(ni) and set(lat.numbers.tolist()) == {29}
    brute = [np.linalg.norm(lat.latents - latents[i].numpy().astype(np.float32), axis=1).min() for i in ni]
    np.testing.assert_allclose(out["forces_std"][0][ni], brute, rtol=1e-5)


def test_method_names_suggest_the_nearest():
    from amptorch.uq import check_method

    with pytest.raises(InputError, match="got 'ensamble' \\(did you mean 'ensemble'\\?\\); expected one of"):
        check_method("ensamble")
    assert check_method(" Dropout ") == "dropout"
