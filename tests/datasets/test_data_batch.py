"""collate and the in-memory dataset / loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from amptorch import InputError
from amptorch.data import AtomsDataset, collate


def test_collate_offsets_reproduce_blocks(records):
    recs = [records[0], records[2], records[1]]  # 32-atom bulk, water, slab
    b = collate(recs)
    n = [r.n_atoms for r in recs]
    assert b.n_atoms.tolist() == n
    assert b.features.shape == (sum(n), recs[0].n_features)
    assert b.image.tolist() == sum(([k] * m for k, m in enumerate(n)), [])
    atom0 = np.concatenate([[0], np.cumsum(n)[:-1]])
    pair0 = np.concatenate([[0], np.cumsum([r.n_pairs for r in recs])[:-1]])
    for k, r in enumerate(recs):
        a, p = slice(atom0[k], atom0[k] + r.n_atoms), slice(pair0[k], pair0[k] + r.n_pairs)
        np.testing.assert_array_equal(b.features[a].numpy(), r.features)
        np.testing.assert_array_equal(b.numbers[a].numpy(), r.numbers)
        np.testing.assert_array_equal(b.pair_i[p].numpy() - atom0[k], r.pair_i)
        np.testing.assert_array_equal(b.pair_j[p].numpy() - atom0[k], r.pair_j)
        np.testing.assert_array_equal(b.dfeat[p].numpy(), r.dfeat)
        np.testing.assert_array_equal(b.forces[a].numpy(), r.forces)
        # pair indices point into the stacked atoms of the same structure
        assert (b.image[b.pair_i[p]] == k).all() and (b.image[b.pair_j[p]] == k).all()
        np.testing.assert_array_equal(b.numbers[b.pair_j[p]].numpy(), r.numbers[r.pair_j])
    assert b.energy.tolist() == pytest.approx([r.energy for r in recs])
    assert np.isnan(b.volume[1].item()) and b.volume[0].item() == pytest.approx(recs[0].volume)


def test_dataset_and_loader(records):
    ds = AtomsDataset(records)
    assert len(ds) == 6 and ds.n_features == records[0].n_features
    assert ds.elements == [1, 8, 29, 78]
    order = [b.energy.tolist() for b in DataLoader(ds, batch_size=4, shuffle=True, collate_fn=collate)]
    assert sorted(sum(order, [])) == pytest.approx(sorted(r.energy for r in records))
    batches = list(DataLoader(ds.subset([0, 1, 2]), batch_size=2, collate_fn=collate))
    assert [len(b) for b in batches] == [2, 1]
    assert isinstance(batches[0].features, torch.Tensor)


def test_dataset_rejects_mixed_lengths(records):
    from dataclasses import replace

    bad = replace(records[1], features=records[1].features[:, :3])
    with pytest.raises(InputError, match="structure 1: features: 3 per atom"):
        AtomsDataset([records[0], bad])
