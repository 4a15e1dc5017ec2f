"""Damaged checkpoints (potential/checkpoint.py load, cli.py info): one InputError line naming the
checkpoint and the field, raised before the model is allocated; the calculator and ``predict`` load
through the same code."""

from __future__ import annotations

import json
import shutil

import pytest

from amptorch.cli import main
from amptorch.errors import InputError
from amptorch.potential import TrainedPotential
from amptorch.potential.calculator import AmpTorchCalculator

from .conftest import isolated, one_line


@pytest.fixture()
def damaged(tiny_run, tmp_path):
    """A copy of the tiny checkpoint to damage."""
    path = tmp_path / "ck"
    shutil.copytree(tiny_run, path)
    return path


def edit_meta(path, change):
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta))


def refused(path, *parts) -> str:
    with pytest.raises(InputError) as info:
        TrainedPotential.load(path)
    return one_line(info.value, f"checkpoint {path}", *parts)


def test_intact_checkpoint_loads(tiny_run):
    assert TrainedPotential.load(tiny_run).descriptor.length == 4


def test_meta_json_not_json(damaged):
    (damaged / "meta.json").write_text('{"format": 1, ')
    refused(damaged, "meta.json:", "not valid JSON", "line 1")
    (damaged / "meta.json").write_bytes(b"\xff\xfe\x00")
    refused(damaged, "meta.json:", "not UTF-8")
    (damaged / "meta.json").write_text("[1, 2]")
    refused(damaged, "meta.json:", "holds a list")


@pytest.mark.parametrize("key", ["descriptor", "descriptor_hash", "network", "n_features", "dtype"])
def test_meta_json_missing_key(damaged, key):
    edit_meta(damaged, lambda m: m.pop(key))
    refused(damaged, f"meta.json {key}:", "missing")


@pytest.mark.parametrize(
    "change, parts",
    [
        (lambda m: m.update(n_features="4"), ("meta.json n_features:", "got '4'")),
        (lambda m: m.update(n_features=True), ("meta.json n_features:",)),
        (lambda m: m.update(n_features=5), ("meta.json n_features:", "got 5", "gives 4")),
        (lambda m: m.update(dtype="float16"), ("meta.json dtype:", "float16")),
        (lambda m: m.update(network=[1]), ("meta.json network:",)),
        (lambda m: m["network"].update(name=3), ("meta.json network.name:",)),
        (lambda m: m["network"].update(name="cnn"), ("meta.json network", "cnn")),
        (lambda m: m["network"].update(options=None), ("meta.json network.options:",)),
        (lambda m: m["network"]["options"].update(elements=[29, "x"]), ("meta.json network.options.elements:",)),
        (lambda m: m["network"]["options"].update(hidden_layers=[8, -1]), ("network.options.hidden_layers:",)),
        (lambda m: m["network"]["options"].update(bogus=1), ("meta.json network", "'bogus'")),
        (lambda m: m["descriptor"].update(kind="zzz"), ("meta.json descriptor", "'zzz'")),
        (lambda m: m["descriptor"].update(cutoff=-1), ("meta.json descriptor.cutoff", "-1")),
        (lambda m: m.update(format=7), ("format 7",)),
    ],
)
def test_meta_json_wrong_values(damaged, change, parts):
    edit_meta(damaged, change)
    with pytest.raises(InputError) as info:
        TrainedPotential.load(damaged)
    one_line(info.value, str(damaged), *parts)


def test_edited_descriptor_no_longer_matches_its_hash(damaged):
    edit_meta(damaged, lambda m: m["descriptor"].update(cutoff=4.5))
    refused(damaged, "meta.json descriptor:", "do not match descriptor_hash", "edited")


def test_absurd_network_is_refused_before_allocating(damaged):
    """hidden layers 3e5 x 3e5 (~360 GB of weights): refused from model.pt's shapes, in a subprocess
    with a timeout so that a regression (allocating) fails instead of taking the machine down."""
    edit_meta(damaged, lambda m: m["network"]["options"].update(hidden_layers=[300000, 300000]))
    out = isolated(f"from amptorch.potential import TrainedPotential\nTrainedPotential.load({str(damaged)!r})")
    assert out["type"] == "InputError"
    one_line(out["message"], f"checkpoint {damaged}", "meta.json network", "(300000, 4)", "model.pt")


def test_widths_must_match_the_weights(damaged):
    edit_meta(damaged, lambda m: m["network"]["options"].update(hidden_layers=[8, 9]))
    refused(damaged, "meta.json network:", "network.body.2.weight", "(8, 8) in model.pt", "(9, 8)")


def test_model_pt_truncated_or_replaced(damaged):
    data = (damaged / "model.pt").read_bytes()
    (damaged / "model.pt").write_bytes(data[: len(data) // 2])
    refused(damaged, "model.pt:", "cannot be read, truncated or damaged")
    (damaged / "model.pt").write_bytes(b"")
    refused(damaged, "model.pt:", "cannot be read")
    (damaged / "model.pt").write_text("not a torch file")
    refused(damaged, "model.pt:", "cannot be read")


def test_model_pt_other_contents(damaged):
    import torch

    state = torch.load(damaged / "model.pt", weights_only=True)
    torch.save([1, 2], damaged / "model.pt")
    refused(damaged, "model.pt:", "no state dict")
    bad = dict(state)
    bad["network.out.bias"] = torch.full_like(state["network.out.bias"], float("nan"))
    torch.save(bad, damaged / "model.pt")
    refused(damaged, "model.pt:", "network.out.bias holds NaN or inf")
    bad = dict(state)
    bad.pop("energy_refs")
    torch.save(bad, damaged / "model.pt")
    refused(damaged, "model.pt:", "'energy_refs'")
    bad = dict(state, extra=torch.zeros(1))
    torch.save(bad, damaged / "model.pt")
    refused(damaged, "model.pt:", "'extra'")


def test_calculator_inherits_the_checks(damaged):
    edit_meta(damaged, lambda m: m["descriptor"].update(cutoff=4.5))
    with pytest.raises(InputError) as info:
        AmpTorchCalculator(str(damaged))
    one_line(info.value, "descriptor_hash")


def test_info_on_a_damaged_checkpoint(damaged, capsys):
    assert main(["info", str(damaged)]) == 0
    capsys.readouterr()
    for text, part in [('{"format": ', "not valid JSON"), ('"x"', "holds a str")]:
        (damaged / "meta.json").write_text(text)
        assert main(["info", str(damaged)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: checkpoint {damaged}") and part in err[0], err
    (damaged / "meta.json").write_text(json.dumps({"format": 1}))
    assert main(["info", str(damaged)]) == 2
    assert "meta.json descriptor: missing" in capsys.readouterr().err


def test_info_on_damaged_metrics_and_config(tiny_run, tmp_path, capsys):
    path = tmp_path / "ck"
    shutil.copytree(tiny_run, path)
    edit_meta(path, lambda m: m.update(metrics={"train": {"energy_mae": "x"}}))
    assert main(["info", str(path)]) == 2
    assert "metrics.train" in capsys.readouterr().err
    edit_meta(path, lambda m: m.pop("metrics"))
    (path / "config.json").write_text("{")
    assert main(["info", str(path)]) == 2
    assert "config.json: not valid JSON" in capsys.readouterr().err
