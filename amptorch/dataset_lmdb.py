"""The original AmpTorch's import path ``from amptorch.dataset_lmdb import get_lmdb_dataset``.

LMDB datasets live in :mod:`amptorch.data.lmdb` (records stored without
pickle); re-exported here so scripts written for the original run unchanged.
Databases written by the original (pickled) are refused, not unpickled.
"""

from amptorch.data.lmdb import LmdbDataset, get_lmdb_dataset, write_lmdb

__all__ = ["get_lmdb_dataset", "LmdbDataset", "write_lmdb"]
