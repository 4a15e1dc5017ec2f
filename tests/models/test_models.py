"""Networks, model options, batching, dtypes, double backward and errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from amptorch.data.batch import collate
from amptorch.errors import InputError
from amptorch.models import (
    BPNN,
    AtomisticModel,
    FeatureFunction,
    SingleNN,
    batch_features,
    build_mlp,
    build_model,
    resolve_activation,
)
from amptorch.testing import rel_error

from ._helpers import ELEMENTS, make_model, make_structure, record

KINDS = ["bulk", "slab", "molecule"]


@pytest.fixture(scope="module")
def records():
    return {k: record("gmp", make_structure(k)) for k in KINDS}


@pytest.mark.parametrize("net", ["singlenn", "singlenn_eo", "bpnn"])
def test_batch_equals_each_alone(net, records):
    recs = [records[k] for k in KINDS]
    model = make_model(net, recs[0].n_features, recs)
    together = model(collate(recs), forces=True, stress=True)
    forces = []
    for b, rec in enumerate(recs):
        alone = model(collate([rec]), forces=True, stress=True)
        torch.testing.assert_close(together["energy"][b : b + 1], alone["energy"], rtol=1e-12, atol=0)
        torch.testing.assert_close(together["stress"][b : b + 1], alone["stress"], equal_nan=True)
        forces.append(alone["forces"])
    torch.testing.assert_close(together["forces"], torch.cat(forces), rtol=1e-10, atol=1e-12)
    # only the bulk (fully periodic) has a stress
    assert torch.isfinite(together["stress"][0]).all()
    assert torch.isnan(together["stress"][1:]).all()
    # per-atom energies sum to the structure energies
    e = torch.zeros(3, dtype=torch.float64).index_add(0, collate(recs).image, together["energies"])
    torch.testing.assert_close(e, together["energy"])


def test_singlenn_parameter_count_independent_of_elements():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    one, ten = SingleNN(12, [29]), SingleNN(12, list(range(1, 11)))
    assert count(one) == count(ten) == 12 * 20 + 20 + 4 * (20 * 20 + 20) + 21
    # per-element outputs and BPNN do grow with the elements
    assert count(SingleNN(12, list(range(1, 11)), element_outputs=True)) == count(one) + 9 * 21
    assert count(BPNN(12, list(range(1, 11)))) == 10 * count(one)


@pytest.mark.parametrize("net", ["singlenn", "singlenn_eo", "bpnn"])
def test_force_loss_double_backward(net, records):
    """d(force + stress loss)/d(parameter) by autograd equals central finite differences."""
    recs = [records[k] for k in KINDS]
    batch = collate(recs)
    model = make_model(net, recs[0].n_features, recs, activation="softplus")
    model.train()
    gen = torch.Generator().manual_seed(11)
    target_f = torch.randn(batch.numbers.shape[0], 3, generator=gen, dtype=torch.float64)
    target_s = torch.randn(6, generator=gen, dtype=torch.float64) * 1e-2

    def loss_fn():
        out = model(batch, forces=True, stress=True)
        return ((out["forces"] - target_f) ** 2).sum() + ((out["stress"][0] - target_s) ** 2).sum()

    params = dict(model.named_parameters())
    name = "network.bodies.1.0.weight" if net == "bpnn" else "network.body.0.weight"
    p = params[name]
    model.zero_grad()
    loss_fn().backward()
    grads = p.grad.clone()
    for idx in [(0, 0), (1, 2), (3, 1)]:
        h = 1e-6
        with torch.no_grad():
            p[idx] += h
        lp = loss_fn().item()
        with torch.no_grad():
            p[idx] -= 2 * h
        lm = loss_fn().item()
        with torch.no_grad():
            p[idx] += h
        fd = (lp - lm) / (2 * h)
        assert abs(fd) > 1e-6
        assert grads[idx].item() == pytest.approx(fd, rel=1e-6, abs=1e-6 * float(grads.abs().max()))
    # the force loss reaches every network parameter but the output biases (constant energy shifts)
    present = set(batch.numbers.tolist())
    for n, q in params.items():
        if n in ("network.out.bias", "network.out_bias") or (
            n.startswith("network.outs.") and n.endswith("bias")
        ):
            assert q.grad is None or (q.grad == 0).all(), n
            continue
        if net == "bpnn":
            k = int(n.split(".")[2])
            if model.network.elements[k] not in present:  # elements absent from the batch: no gradient
                assert q.grad is None or (q.grad == 0).all(), n
                continue
        assert q.grad is not None and q.grad.abs().sum() > 0, n


def test_create_graph_default_follows_training(records):
    rec = records["bulk"]
    model = make_model("singlenn", rec.n_features, [rec])
    model.train()
    assert model(collate([rec]))["forces"].requires_grad
    model.eval()
    out = model(collate([rec]))
    assert not out["forces"].requires_grad
    out["energy"].sum().backward()  # the energy graph is still usable after the force gradient
    with torch.no_grad():
        out = model(collate([rec]), stress=True)
    assert all(not v.requires_grad for v in out.values())
    assert torch.isfinite(out["forces"]).all()


@pytest.mark.parametrize("net", ["singlenn", "bpnn"])
def test_float32_agrees_with_float64(net, records):
    recs = [records[k] for k in KINDS]
    m64 = make_model(net, recs[0].n_features, recs)
    m32 = copy.deepcopy(m64).float()
    assert m32.feature_shift.dtype == torch.float32
    batch = collate(recs)
    o64 = m64(batch, stress=True)
    o32 = m32(batch, stress=True)
    for key in ("energy", "energies", "forces"):
        assert o32[key].dtype == torch.float32
        assert rel_error(o32[key].double().detach().numpy(), o64[key].detach().numpy()) < 1e-5, key
    assert rel_error(o32["stress"][0].double().detach(), o64["stress"][0].detach()) < 1e-4
    # float32 records (descriptor output in float32) work too
    recs32 = [record("gmp", make_structure(k), dtype=np.float32) for k in KINDS]
    o = m32(collate(recs32))
    assert rel_error(o["forces"].double().detach().numpy(), o64["forces"].detach().numpy()) < 1e-4


def test_feature_function_matches_dense_jacobian(records):
    rec = records["slab"]
    batch = collate([rec])
    pos = torch.zeros(rec.n_atoms, 3, dtype=torch.float64, requires_grad=True)
    strain = torch.zeros(1, 3, 3, dtype=torch.float64, requires_grad=True)
    feats = batch_features(batch, pos, strain)
    torch.testing.assert_close(feats, batch.features)
    w = torch.randn(feats.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gp, gs = torch.autograd.grad((w * feats).sum(), [pos, strain])
    dense = torch.from_numpy(rec.dense_dfeat())  # (n, F, n, 3)
    torch.testing.assert_close(gp, torch.einsum("if,ifkc->kc", w, dense))
    ref = torch.einsum("if,ifab->ab", w, torch.from_numpy(rec.dfeat_strain))
    torch.testing.assert_close(gs[0], ref)


def test_feature_function_without_strain(records):
    rec = records["bulk"]
    batch = collate([rec])
    pos = torch.zeros(rec.n_atoms, 3, dtype=torch.float64, requires_grad=True)
    out = FeatureFunction.apply(
        pos, None, batch.features, batch.dfeat, batch.pair_i, batch.pair_j, None, batch.image
    )
    (g,) = torch.autograd.grad(out.sum(), pos)
    assert g.shape == (rec.n_atoms, 3) and g.abs().sum() > 0


def test_missing_derivatives_errors():
    atoms = make_structure("bulk")
    from ._helpers import descriptor

    plain = descriptor("gmp").compute(atoms, derivatives=False)
    model = make_model("singlenn", plain.n_features)
    out = model(collate([plain]), forces=False)
    assert out["energy"].shape == (1,) and "forces" not in out
    with pytest.raises(InputError, match="derivatives=True"):
        model(collate([plain]), forces=True)
    no_strain = descriptor("gmp").compute(atoms, derivatives=True, strain=False)
    with pytest.raises(InputError, match="strain=True"):
        model(collate([no_strain]), stress=True)
    with pytest.raises(InputError, match="expects"):
        make_model("singlenn", plain.n_features + 1)(collate([plain]), forces=False)


def test_bpnn_unknown_element(records):
    rec = records["molecule"]  # C, H, O
    model = AtomisticModel(BPNN(rec.n_features, [1, 6]).double())
    with pytest.raises(InputError, match=r"Z=\[8\].*\[1, 6\]"):
        model(collate([rec]))
    with pytest.raises(InputError, match=r"Z=\[8\]"):
        SingleNN(rec.n_features, [1, 6], element_outputs=True).double()(
            torch.zeros(rec.n_atoms, rec.n_features, dtype=torch.float64), torch.from_numpy(rec.numbers)
        )
    # a shared SingleNN evaluates any element
    assert SingleNN(rec.n_features, [1, 6]).double()(
        torch.zeros(rec.n_atoms, rec.n_features, dtype=torch.float64), torch.from_numpy(rec.numbers)
    ).shape == (rec.n_atoms,)


def test_bpnn_uses_each_elements_network():
    torch.manual_seed(0)
    net = BPNN(5, [1, 8, 29], hidden_layers=[6, 4]).double()
    numbers = torch.tensor([29, 1, 8, 1, 29, 29])
    x = torch.randn(6, 5, dtype=torch.float64)
    out, lat = net.forward_latent(x, numbers)
    for a, z in enumerate(numbers.tolist()):
        k = net.elements.index(z)
        h = net.bodies[k](x[a : a + 1])
        torch.testing.assert_close(lat[a], h[0])
        torch.testing.assert_close(out[a], net.outs[k](h)[0, 0])
    # single element: no gather path
    one = BPNN(5, [29], hidden_layers=[3]).double()
    torch.testing.assert_close(one(x, torch.full((6,), 29)), one.outs[0](one.bodies[0](x)).squeeze(-1))


def test_singlenn_element_outputs_gather():
    torch.manual_seed(0)
    net = SingleNN(5, [1, 8], hidden_layers=[4], element_outputs=True).double()
    numbers = torch.tensor([8, 1, 1, 8])
    x = torch.randn(4, 5, dtype=torch.float64)
    h = net.forward_latent(x, numbers)[1]
    expect = torch.stack([h[a] @ net.out_weight[k] + net.out_bias[k] for a, k in enumerate([1, 0, 0, 1])])
    torch.testing.assert_close(net(x, numbers), expect)


@pytest.mark.parametrize("net", ["singlenn", "bpnn"])
def test_latent_shapes(net, records):
    recs = [records[k] for k in KINDS]
    model = make_model(net, recs[0].n_features, recs, hidden_layers=[7, 5])
    out = model(collate(recs), forces=False, latent=True)
    n = sum(r.n_atoms for r in recs)
    assert out["latent"].shape == (n, 5)
    assert model.network.forward_latent(
        torch.zeros(n, recs[0].n_features, dtype=torch.float64), collate(recs).numbers
    )[1].shape == (
        n,
        5,
    )


def test_activations():
    assert resolve_activation("TANH") is nn.Tanh
    assert resolve_activation("swish") is nn.SiLU and resolve_activation("SiLU") is nn.SiLU
    for name in ["relu", "gelu", "softplus", "celu", "elu", "sigmoid"]:
        assert isinstance(resolve_activation(name)(), nn.Module)
    assert resolve_activation(nn.Tanh) is nn.Tanh
    inst = nn.Softplus(beta=2.0)
    assert resolve_activation(inst)() is inst
    with pytest.raises(InputError, match="did you mean 'tanh'"):
        resolve_activation("tanhh")
    with pytest.raises(InputError, match="did you mean 'softplus'"):
        SingleNN(4, [1], activation="softplsu")
    with pytest.raises(InputError, match="activation"):
        resolve_activation(3)
    with pytest.raises(InputError, match="activation"):
        resolve_activation(torch.optim.SGD)


def test_build_mlp_options():
    torch.manual_seed(0)
    m = build_mlp(4, [6, 5], n_out=2, activation="relu", batchnorm=True, dropout=True, dropout_rate=0.2)
    kinds = [type(x).__name__ for x in m]
    assert kinds == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert m(torch.randn(3, 4)).shape == (3, 2)
    z = build_mlp(4, [3], initialization="zero")
    assert all((p == 0).all() for p in z.parameters())
    x = build_mlp(4, [3], initialization="xavier")
    assert (x[0].bias == 0).all() and x[0].weight.abs().max() <= (6 / 7) ** 0.5
    build_mlp(4, [3], initialization="kaiming")
    build_mlp(4, [3], initialization="default")
    with pytest.raises(InputError, match="did you mean 'xavier'"):
        build_mlp(4, [3], initialization="xavir")
    with pytest.raises(InputError, match="dropout_rate"):
        build_mlp(4, [3], dropout=True, dropout_rate=1.5)
    with pytest.raises(InputError, match="hidden_layers"):
        build_mlp(4, [])


def test_build_model():
    assert isinstance(build_model("SingleNN", 4, [1]), SingleNN)
    b = build_model("bpnn", 4, [8, 1], num_layers=2, num_nodes=7)
    assert isinstance(b, BPNN) and b.hidden_layers == [7, 7] and b.elements == [1, 8]
    assert build_model("bpnn", 4, [1], hidden_layers=None, num_layers=3).hidden_layers == [20, 20, 20]
    with pytest.raises(InputError, match="did you mean 'bpnn'"):
        build_model("bpn", 4, [1])
    with pytest.raises(InputError, match="did you mean 'hidden_layers'"):
        build_model("singlenn", 4, [1], hiden_layers=[3])
    with pytest.raises(InputError, match="element_outputs"):
        build_model("bpnn", 4, [1], element_outputs=True)
    with pytest.raises(InputError, match="elements"):
        build_model("bpnn", 4, [0])
    with pytest.raises(InputError, match="elements"):
        build_model("bpnn", 4, [])


def test_model_tables_checked_and_follow_dtype():
    net = SingleNN(3, ELEMENTS)
    with pytest.raises(InputError, match="feature_shift"):
        AtomisticModel(net, feature_shift=torch.zeros(100, 3))
    with pytest.raises(InputError, match="feature_scale"):
        AtomisticModel(net, feature_scale=torch.zeros(119, 3))
    m = AtomisticModel(net, energy_refs=np.arange(119.0), energy_scale=2.0).double()
    assert m.energy_refs.dtype == torch.float64 and float(m.energy_scale) == 2.0
    assert m.state_dict()["energy_refs"][5] == 5.0
