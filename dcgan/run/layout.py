"""The run folder's layout, owned here: what a run writes where (README "Outputs").

RUN/config.yaml               the resolved config of the newest start
RUN/run_history.jsonl         one line per start: machine, versions, allowed config changes
RUN/metrics.jsonl             training and evaluation rows
RUN/checkpoints/step_XXXXXXX/ checkpoints (dcgan/run/checkpoint.py owns their inside and naming)
RUN/samples/step_XXXXXXX.png  the fixed-noise grids
RUN/generator.safetensors     the final generator, RUN/loss.png, RUN/progress.gif
RUN/eval.json                 what `dcgan eval RUN` measured
RUN/run.lock                  the live trainer (dcgan/run/lock.py), RUN/wandb_run_id, RUN/wandb/

and finding the generator in a run folder, a checkpoint folder or a folder that `dcgan export` wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from dcgan.errors import UserError
from dcgan.models.file import GENERATOR_FORMAT, read_generator
from dcgan.run.checkpoint import AVERAGE_FILE, CONFIG_FILE, checkpoint_name, latest_valid
from dcgan.run.checkpoint import FORMAT as CHECKPOINT_FORMAT

GENERATOR_FILE = "generator.safetensors"
HISTORY_FILE = "run_history.jsonl"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"  # `dcgan eval`'s result for a run or checkpoint folder
WANDB_ID_FILE = "wandb_run_id"


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def history(self) -> Path:
        return self.root / HISTORY_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def sample_grid(self, step: int) -> Path:
        return self.samples / f"{checkpoint_name(step)}.png"

    @property
    def generator(self) -> Path:
        return self.root / GENERATOR_FILE

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def progress_gif(self) -> Path:
        return self.root / "progress.gif"

    @property
    def eval_json(self) -> Path:
        return self.root / EVAL_FILE

    @property
    def wandb_id(self) -> Path:
        return self.root / WANDB_ID_FILE

    def __str__(self) -> str:
        return str(self.root)


def read_rows(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file (metrics.jsonl, run_history.jsonl), blank lines skipped."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


EXPORTED_FILE = "model.safetensors"  # in a folder written by `dcgan export` (dcgan/run/export.py)


def resolve_generator_file(path: Path) -> Path:
    """A generator file, an exported model folder, or a run folder: its final generator, else its newest valid
    checkpoint's.

    In a checkpoint folder the moving average of G (what the run sampled and evaluated) wins over
    the training weights.
    """
    if path.is_file():
        return path
    if (path / EXPORTED_FILE).is_file():
        return path / EXPORTED_FILE
    if path.is_dir():
        newest = path if (path / GENERATOR_FILE).is_file() else latest_valid(RunDir(path).checkpoints)
        if newest is not None:
            averaged = newest / AVERAGE_FILE
            return averaged if averaged.is_file() else newest / GENERATOR_FILE
        raise UserError(f"{path} holds no {GENERATOR_FILE} and no valid checkpoint; has the run saved yet?")
    raise UserError(f"{path} does not exist; pass a run folder or a {GENERATOR_FILE} file")


def load_generator(path: Path) -> tuple[nn.Module, str]:
    """(generator in eval mode on CPU, its pixel range) from a file written by `export_generator`."""
    generator, meta = load_generator_and_metadata(path)
    return generator, meta.get("pixel_range", "signed")


def load_generator_and_metadata(path: Path) -> tuple[nn.Module, dict[str, str]]:
    """(generator in eval mode on CPU, the file's metadata), from a generator file or a run, checkpoint or
    exported folder."""
    return read_generator(resolve_generator_file(path), (GENERATOR_FORMAT, CHECKPOINT_FORMAT))
