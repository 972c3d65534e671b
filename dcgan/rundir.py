"""The run folder's layout, owned here: what a run writes where (README "Outputs").

RUN/config.yaml               the resolved config of the newest start
RUN/run_history.jsonl         one line per start: machine, versions, allowed config changes
RUN/metrics.jsonl             training and evaluation rows
RUN/checkpoints/step_XXXXXXX/ checkpoints (dcgan/checkpoint.py owns their inside and naming)
RUN/samples/step_XXXXXXX.png  the fixed-noise grids
RUN/generator.safetensors     the final generator, RUN/loss.png, RUN/progress.gif
RUN/eval.json                 what `dcgan eval RUN` measured
RUN/run.lock                  the live trainer (dcgan/runlock.py), RUN/wandb_run_id, RUN/wandb/
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dcgan.checkpoint import CONFIG_FILE, checkpoint_name

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
