"""`python tests/helpers/cache_probe.py OUT ROOT`, as each rank of a 2-process run (tests/data): the rank
plays a machine of its own, `node<RANK>` with its own decoded-image cache `OUT/cache<RANK>` (a local disk),
and prepares and loads the folder at ROOT through `ensure_dataset`; writes OUT/rank<RANK>.json with what it
loaded and what its cache holds.
"""

import hashlib
import json
import os
import socket
import sys
from pathlib import Path

from accelerate import Accelerator

from dcgan.config import DataConfig
from dcgan.data import ensure_dataset, load_dataset

out, root = Path(sys.argv[1]), sys.argv[2]
rank = int(os.environ["RANK"])
socket.gethostname = lambda: f"node{rank}"  # noqa: E731 (what ensure_entry and the owner files read)
os.environ["DCGAN_CACHE"] = str(out / f"cache{rank}")
cfg = DataConfig(name="folder", root=root)
ensure_dataset(cfg, Accelerator(cpu=True))
images = load_dataset(cfg).images.numpy()
held = sorted(p.name for p in (out / f"cache{rank}" / "folders").iterdir())
report = {"images": hashlib.sha256(images.tobytes()).hexdigest(), "shape": list(images.shape), "cache": held}
(out / f"rank{rank}.json").write_text(json.dumps(report))
