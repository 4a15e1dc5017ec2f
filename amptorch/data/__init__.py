"""Data: read structures and labels, featurize (with a disk cache), datasets
(in memory or LMDB), geometry records for recompute-mode training, batches, feature scaling, energy baseline and splits.

Imports ``descriptors`` and torch; knows nothing of models or training.
"""

from amptorch.data.baseline import EnergyBaseline
from amptorch.data.batch import Batch, collate
from amptorch.data.dataset import AtomsDataset, RecordView
from amptorch.data.featurize import featurize, structure_hash
from amptorch.data.geometry import GeometryDataset, GeometryRecord, geometry_record
from amptorch.data.io import check_labels, labels, read_structures
from amptorch.data.lmdb import LmdbDataset, get_lmdb_dataset, read_metadata, update_metadata, write_lmdb
from amptorch.data.scaling import FeatureScaler
from amptorch.data.splits import train_val_split
from amptorch.descriptors.record import FeatureRecord

__all__ = [
    "AtomsDataset",
    "Batch",
    "EnergyBaseline",
    "FeatureRecord",
    "FeatureScaler",
    "GeometryDataset",
    "GeometryRecord",
    "LmdbDataset",
    "check_labels",
    "collate",
    "featurize",
    "geometry_record",
    "get_lmdb_dataset",
    "labels",
    "RecordView",
    "read_metadata",
    "read_structures",
    "structure_hash",
    "train_val_split",
    "update_metadata",
    "write_lmdb",
]
