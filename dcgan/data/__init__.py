"""Datasets behind one interface (dataset.py), held in memory as uint8 and handed out in sharded,
seeded, resumable batches (sharding.py), from the device or host memory (placement.py)."""

from dcgan.data.dataset import (
    Dataset,
    ensure_dataset,
    fingerprint,
    from_model_range,
    has_test_split,
    load_dataset,
    to_model_range,
)
from dcgan.data.placement import ImageStore
from dcgan.data.sharding import ShardedBatches

__all__ = [
    "Dataset",
    "ImageStore",
    "ShardedBatches",
    "ensure_dataset",
    "fingerprint",
    "from_model_range",
    "has_test_split",
    "load_dataset",
    "to_model_range",
]
