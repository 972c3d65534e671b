"""A Hugging Face `datasets` dataset (`data.name=hf`): its image column decoded once into the cache like a folder.

`data.root` is a folder written by `save_to_disk`, a .parquet or .arrow file, or a Hub name (its `train`
split, through the library's own cache; offline it must be there already). The images are read as their
encoded bytes (the column cast to `Image(decode=False)`) and decoded by dcgan/data/decoding.py, the same way
as a folder's files; `data.label_column` gives the classes (a `ClassLabel`'s names, else the sorted values).
The `datasets` library is an optional extra (`pip install 'dcgan[hf]'`): with pyarrow and pandas it
weighs about 260 MB, which runs on MNIST or a folder do not need.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from dcgan.config import DataConfig
from dcgan.data.building import Cached
from dcgan.data.folder import content_of
from dcgan.errors import UserError

SPLIT = "train"


class Rows:
    """The image column of a dataset as a decoding source (dcgan/data/decoding.py)."""

    def __init__(self, dataset: Any, column: str, name: str):
        self.dataset, self.column, self.label = dataset, column, name

    def __len__(self) -> int:
        return len(self.dataset)

    def open(self, i: int) -> Image.Image:
        value = self.dataset[i][self.column]
        if isinstance(value, dict):  # an Image feature: encoded bytes, or a path to a file
            value = value.get("bytes") or value.get("path")
        if isinstance(value, bytes | bytearray):
            return Image.open(io.BytesIO(value))
        if isinstance(value, str):
            return Image.open(value)
        raise OSError(f"column {self.column} holds {type(value).__name__}, not an image")

    def where(self, i: int) -> str:
        return f"row {i} of {self.label} (column {self.column})"

    def name(self, i: int) -> str:
        return f"row {i}"


def source(cfg: DataConfig) -> Cached:
    """The dataset's training rows (the first `data.limit`), its labels and what keys its cache entry."""
    datasets = _library()
    dataset, content = _open(datasets, cfg.root)
    columns = dataset.column_names
    if cfg.image_column not in columns:
        raise UserError(
            f"the dataset {cfg.root} has no column {cfg.image_column!r} (it has {', '.join(columns)}); "
            "set data.image_column to the one that holds the images"
        )
    if cfg.limit:
        dataset = dataset.select(range(min(cfg.limit, len(dataset))))
    if not len(dataset):
        raise UserError(f"the dataset {cfg.root} has no rows")
    feature = dataset.features[cfg.image_column]
    if isinstance(feature, datasets.Image):
        dataset = dataset.cast_column(cfg.image_column, datasets.Image(decode=False))
    elif not (isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary", "string")):
        raise UserError(
            f"column {cfg.image_column!r} of {cfg.root} holds {feature}, not images; "
            "set data.image_column to an Image column (or one of encoded image bytes)"
        )
    classes, labels = _labels(datasets, dataset, cfg.label_column)
    content = {**content, "rows": len(dataset), "limit": cfg.limit}
    extra = {"image_column": cfg.image_column, "label_column": cfg.label_column if classes else ""}
    return Cached(Rows(dataset, cfg.image_column, cfg.root), cfg.root, content, classes, labels, extra)


def _library():
    try:
        import datasets
    except ImportError:
        raise UserError(
            "data.name=hf reads Hugging Face datasets with the `datasets` library: pip install 'dcgan[hf]'"
        ) from None
    return datasets


def _open(datasets, root: str) -> tuple[Any, dict]:
    """(the training split, what identifies its content)."""
    path = Path(root)
    try:
        if path.is_dir():
            return _from_disk(datasets, path), {"files": content_of(path)}
        if path.is_file():
            if path.suffix == ".parquet":
                dataset = datasets.load_dataset("parquet", data_files=str(path), split=SPLIT)
            elif path.suffix == ".arrow":
                dataset = datasets.Dataset.from_file(str(path))
            else:
                raise UserError(f"data.root {root} is neither a .parquet nor an .arrow file")
            return dataset, {"files": content_of(path)}
        if root.count("/") != 1 or root.startswith((".", "/")):
            raise UserError(
                f"data.root {root} does not exist; for data.name=hf give a save_to_disk folder, a .parquet or "
                ".arrow file, or a Hub name USER/NAME"
            )
        dataset = datasets.load_dataset(root, split=SPLIT)
        return dataset, {"hub": root, "fingerprint": dataset._fingerprint}
    except UserError:
        raise
    except ConnectionError:
        raise UserError(
            f"the dataset {root} is not in the local Hugging Face cache and the Hub cannot be reached (offline); "
            "download it once where it can, or point data.root at a save_to_disk folder or a parquet file"
        ) from None
    except Exception as e:  # the library's own errors: not found, no train split, a damaged file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read the Hugging Face dataset {root} ({reason})") from None


def _from_disk(datasets, path: Path):
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise UserError(
            f"data.root {path} is not a folder written by save_to_disk (no state.json or dataset_dict.json)"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        if SPLIT not in loaded:
            raise UserError(f"the dataset {path} has no {SPLIT!r} split (it has {', '.join(loaded)})")
        loaded = loaded[SPLIT]
    return loaded


def _labels(datasets, dataset, column: str) -> tuple[tuple[str, ...], list[int]]:
    """(class names, the class index of every row); ((), []) without the column."""
    if column not in dataset.column_names:
        return (), []
    feature = dataset.features[column]
    values = dataset[column]
    if isinstance(feature, datasets.ClassLabel):
        return tuple(feature.names), [int(v) for v in values]
    if not (isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint", "string"))):
        raise UserError(f"column {column!r} holds {feature}, not classes; set data.label_column (or drop it)")
    names = sorted(set(values))
    index = {v: i for i, v in enumerate(names)}
    return tuple(str(v) for v in names), [index[v] for v in values]
