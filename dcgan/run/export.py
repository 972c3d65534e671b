"""Model folders that travel: `dcgan export RUN OUT_DIR`, `dcgan push RUN --repo-id USER/NAME`, and reading one
back from a folder or the local Hugging Face cache.

An exported folder follows the layout `huggingface_hub` uses for a model repository:
  model.safetensors   G's weights, with the same metadata as generator.safetensors (so it loads as one)
  config.json         the model config, pixel range, which weights (moving average or last), step, recipe
  README.md           a model card: what it is, the recipe, the run's metrics, a sample grid, how to sample
  samples.png         that grid
`dcgan sample|eval` accept the folder itself. Nothing in it is pickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from dcgan import __version__
from dcgan.config import to_flat_values, yaml_scalar
from dcgan.errors import UserError
from dcgan.io.files import read_weights, save_weights
from dcgan.io.images import save_grid
from dcgan.models.sampling import generate
from dcgan.run.layout import EXPORTED_FILE, RunDir, load_generator, read_rows, resolve_generator_file

MODEL_FILE = EXPORTED_FILE
_NOT_EVALUATED = "Not evaluated: `dcgan eval RUN` before exporting adds its numbers here."
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
GRID_FILE = "samples.png"


def export_model(source: Path, out_dir: Path) -> Path:
    """Write the model folder for a run folder, checkpoint folder or generator file; returns `out_dir`."""
    file = resolve_generator_file(source)
    generator, pixel_range = load_generator(file)  # checks that it is a dcgan generator first
    tensors, metadata = read_weights(file)
    run_dir = _run_folder_of(file)
    recipe = _portable(yaml.safe_load(run_dir.config.read_text())) if run_dir else None
    metrics, measured_by = _metrics_of(run_dir, file)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(out_dir / MODEL_FILE, tensors, metadata)
    config = {
        "library": "dcgan",
        "dcgan_version": __version__,
        "format": metadata.get("format"),
        "model": json.loads(metadata["model"]),
        "data": json.loads(metadata.get("data", '{"name": "mnist", "image_size": 28, "channels": 1}')),
        "classes": json.loads(metadata.get("classes", "[]")) if config_is_conditional(metadata) else [],
        "pixel_range": pixel_range,
        "weights": metadata.get("weights", "last"),
        "step": int(metadata.get("step", 0)),
        "recipe": recipe,
        "metrics": metrics,
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
    save_grid(generate(generator, 64, 0, pixel_range), out_dir / GRID_FILE)
    (out_dir / CARD_FILE).write_text(model_card(config, measured_by))
    return out_dir


def _run_folder_of(file: Path) -> RunDir | None:
    """The run folder a generator file belongs to (its own folder, or two up from a checkpoint's)."""
    for run in (RunDir(file.parent), RunDir(file.parent.parent.parent)):
        if run.config.is_file() and run.checkpoints.is_dir():
            return run
    return None


def config_is_conditional(metadata: dict[str, str]) -> bool:
    return bool(json.loads(metadata["model"]).get("conditional"))


def _portable(recipe: dict[str, Any]) -> dict[str, Any]:
    """The config without what only meant something on the machine that trained (paths, W&B entity, faults)."""
    dropped = {"output_dir", "resume", "log", "checkpoint", "fault"}
    kept = {k: v for k, v in recipe.items() if k not in dropped}
    kept["data"] = {k: v for k, v in recipe.get("data", {}).items() if k not in ("root", "download")}
    return kept


def _metrics_of(run_dir: RunDir | None, file: Path) -> tuple[dict[str, Any], str]:
    """The run's sample-quality numbers: `dcgan eval`'s eval.json, else the last evaluation during training."""
    if run_dir is None:
        return {}, _NOT_EVALUATED
    eval_json = run_dir.eval_json
    if eval_json.is_file():
        result = json.loads(eval_json.read_text())
        return result, f"`dcgan eval` ({result.get('num_samples')} samples, seed {result.get('seed')})"
    rows = read_rows(run_dir.metrics) if run_dir.metrics.is_file() else []
    evaluated = [row for row in rows if any(k.startswith("eval/") for k in row)]
    if not evaluated:
        return {}, _NOT_EVALUATED
    last = evaluated[-1]
    timings = ("eval/seconds", "eval/train_s")  # how long, not how good
    values = {k.removeprefix("eval/"): v for k, v in last.items() if k.startswith("eval/") and k not in timings}
    return values, f"the evaluation during training at step {last['step']}"


def model_card(config: dict[str, Any], measured_by: str) -> str:
    recipe = config.get("recipe") or {}
    train, data = recipe.get("train", {}), config["data"]
    metrics = {k: v for k, v in config["metrics"].items() if isinstance(v, (int, float)) and k != "seed"}
    table = "\n".join(f"| {k} | {v:.4g} |" for k, v in metrics.items())
    measured = f"Measured by {measured_by}:\n\n| metric | value |\n| --- | --- |\n{table}" if metrics else measured_by
    shown = ["seed", "data.name", "data.pixel_range", "model.name", "model.z_dim", "train.epochs", "train.batch_size",
             "train.mixed_precision", "train.g_first", "train.real_label", "train.ema_decay"]  # fmt: skip
    flat = to_flat_values(recipe)
    classes = config.get("classes") or []
    by_class = (
        f"\ndcgan sample THIS_FOLDER --class {classes[0]!r} --n 16 --out one_class.png   # classes: "
        + ", ".join(classes)
        + "\ndcgan sample THIS_FOLDER --per-class --out rows.png  # a row per class"
        if classes
        else ""
    )
    recipe_lines = "\n".join(f"- `{k}`: {yaml_scalar(flat[k])}" for k in shown if k in flat) or "- (no run config)"
    return f"""---
library_name: dcgan
tags:
- gan
- dcgan
- image-generation
- {data.get("name", "mnist")}
---

# DCGAN generator ({config["model"].get("name", "dcgan")}, {data.get("name", "mnist")}, \
{data.get("image_size", 28)} px, {data.get("channels", 1)} channel(s))

A generator trained with the `dcgan` framework for {config["step"]} steps
({train.get("epochs", "?")} epochs configured, batch {train.get("batch_size", "?")} per process).
These are the weights of {"a moving average of G" if config["weights"] == "ema" else "G's last iterate"}.
Images come out in [0, 1] after mapping G's output from its `{config["pixel_range"]}` training range.

![64 samples, seed 0]({GRID_FILE})

## Recipe

{recipe_lines}

The whole resolved config is in `config.json` (`recipe`).

## Metrics

{measured}

## Use

```bash
# with the dcgan package installed
dcgan sample THIS_FOLDER --n 64 --out grid.png      # or USER/NAME once it is in your Hugging Face cache
dcgan eval THIS_FOLDER                              # fid and friends against the test split{by_class}
```
"""


def push(source: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Export `source` and upload it to the Hub as model repo `repo_id`; returns the repo's URL."""
    from huggingface_hub import HfApi, get_token

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserError(f"--repo-id {repo_id!r}: give it as USER/NAME (or ORG/NAME)")
    token = token or get_token()
    if not token:
        raise UserError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN, then push again")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="dcgan-export-") as folder:
        export_model(source, Path(folder))
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload dcgan generator")
        except Exception as e:  # noqa: BLE001 - network, auth and permission errors come from several libraries
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"cannot push to the Hugging Face Hub as {repo_id} ({reason})") from None
    return str(url)


def from_hub_cache(name: str) -> Path | None:
    """The local snapshot of Hub model repo `name` (USER/NAME) if it is in the Hugging Face cache, else None."""
    if name.count("/") != 1 or Path(name).exists():
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        # The cache named now, not when huggingface_hub was first imported (it reads HF_HUB_CACHE only then).
        return Path(snapshot_download(name, local_files_only=True, cache_dir=_hub_cache()))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None


def cache_hint(name: str) -> str:
    return (
        f"{name} is neither a path nor a model in the local Hugging Face cache ({_hub_cache()}); "
        f"`hf download {name}` first"
    )


def local_source(source: Path | None) -> Path | None:
    """`source` as given, or the local snapshot of Hub model USER/NAME when no such path exists."""
    if source is None or source.exists() or len(source.parts) != 2:
        return source
    snapshot = from_hub_cache(str(source))
    if snapshot is None:
        raise UserError(cache_hint(str(source)))
    return snapshot


def _hub_cache() -> str:
    """Where the Hub's cache is, as huggingface_hub resolves it: HF_HUB_CACHE, else HF_HOME/hub, else
    ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")
