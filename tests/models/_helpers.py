"""The model tests' structures, descriptors and models (presets of the test kit, ``amptorch.testing``)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from amptorch import testing as kit
from amptorch.data.batch import collate

ELEMENTS = [1, 6, 8, 29, 46]
SYMBOLS = ["H", "C", "O", "Cu", "Pd"]
H_POS = 1e-5  # Å, position step of the central differences
H_STRAIN = 1e-5  # strain step


def make_structure(kind: str):
    if kind == "bulk":  # 4 atoms, fully periodic
        a = kit.fcc_bulk("Cu", 3.7, substitute={1: "Pd"}, rattle=0.08, seed=3, method="ase")
    elif kind == "slab":  # pbc T, T, F
        a = kit.fcc111_slab("Cu", (2, 2, 2), 4.0, substitute={-1: "Pd"}, rattle=0.08, seed=4, method="ase")
        assert list(a.pbc) == [True, True, False]
    elif kind == "molecule":
        a = kit.isolated_molecule("CH3OH", rattle=0.05, seed=5, method="ase")
    else:
        raise ValueError(kind)
    return a


@functools.lru_cache
def descriptor(name: str):
    if name == "gmp":
        return kit.DESCRIPTORS["gmp_smooth"](SYMBOLS)
    if name == "gsf":
        return kit.DESCRIPTORS["gsf"](SYMBOLS)
    raise ValueError(name)


def record(desc_name: str, atoms, dtype=np.float64):
    return descriptor(desc_name).compute(atoms, derivatives=True, strain=True, dtype=dtype)


def make_model(net: str, n_features: int, records=(), seed: int = 0, dtype=torch.float64, **options):
    """The kit's untrained model on ELEMENTS; "singlenn_eo" is SingleNN with element outputs."""
    if net == "singlenn_eo":
        net, options = "singlenn", {"element_outputs": True, **options}
    return kit.make_model(net, n_features, ELEMENTS, records, seed=seed, dtype=dtype, **options)


def model_energies(model, records) -> np.ndarray:
    with torch.no_grad():
        out = model(collate(records), forces=False)
    return out["energy"].double().numpy()


def energy_fn(model, desc_name: str):
    """Energies (eV) of a list of structures: featurize each, run the model on the batch."""
    return lambda structures: model_energies(model, [record(desc_name, s) for s in structures])
