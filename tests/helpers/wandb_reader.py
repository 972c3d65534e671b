"""Read back what an offline W&B run recorded, for tests.

A `run-<id>.wandb` file is a LevelDB-style log: a 7-byte file header (":W&B", magic, version), then
32 KiB blocks of chunks, each with a 7-byte header (crc32c, length, type: full/first/middle/last)
around pieces of serialized `wandb_internal_pb2.Record` messages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:_HEADER])
    assert ident == b":W&B", f"{path} is not a W&B record file"
    out, pending, offset = [], b"", _HEADER
    while offset + _HEADER <= len(data):
        room = _BLOCK - offset % _BLOCK
        if room < _HEADER:  # block trailer padding
            offset += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + _HEADER])
        chunk = data[offset + _HEADER : offset + _HEADER + length]
        offset += _HEADER + length
        if kind in (_FULL, _FIRST):
            pending = chunk
        elif kind in (_MIDDLE, _LAST):
            pending += chunk
        else:
            break  # zero padding at the end of the file
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def history(path: Path) -> list[dict]:
    """One dict per logged row, with `_step`; values decoded from JSON."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def config(path: Path) -> dict:
    """The run's config, {key: value}, merged over all config records."""
    merged = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        items = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        for item in items:
            merged[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return merged


def run_id(path: Path) -> str:
    return run_record(path).run_id


def run_record(path: Path) -> wandb_internal_pb2.RunRecord:
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            return record.run
    raise AssertionError(f"no run record in {path}")


def of_type(path: Path, kind: str) -> list:
    """The payloads of every record of one kind (`metric`, `artifact`, `summary`, ...)."""
    return [getattr(r, kind) for r in records(path) if r.WhichOneof("record_type") == kind]
