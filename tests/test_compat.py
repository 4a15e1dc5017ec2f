"""The original AmpTorch's import paths resolve to our objects; its pickled LMDBs are refused, not unpickled."""

from __future__ import annotations

import pickle

import lmdb
import pytest

from amptorch.errors import InputError


def test_original_import_paths():
    from amptorch.ase_utils import AmpTorch
    from amptorch.calculator import AmpTorch as ours_calc
    from amptorch.data.lmdb import get_lmdb_dataset as ours_lmdb
    from amptorch.dataset_lmdb import get_lmdb_dataset
    from amptorch.train import AtomsTrainer as ours_trainer
    from amptorch.trainer import AtomsTrainer

    assert AtomsTrainer is ours_trainer and AmpTorch is ours_calc and get_lmdb_dataset is ours_lmdb


class _Boom:
    """Unpickling this runs code: the test fails if the loader ever unpickles."""

    def __reduce__(self):
        return (pytest.fail, ("a pickled LMDB entry was unpickled",))


def test_original_pickled_lmdb_is_refused_without_unpickling(tmp_path):
    from amptorch.dataset_lmdb import get_lmdb_dataset

    path = str(tmp_path / "original.lmdb")
    env = lmdb.open(path, subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:  # the original's layout: pickled entries "0".."N-1", "length", ...
        txn.put(b"0", pickle.dumps(_Boom()))
        txn.put(b"length", pickle.dumps(1))
    env.close()
    with pytest.raises(InputError, match="expected a database written by write_lmdb"):
        get_lmdb_dataset([path], "full")
