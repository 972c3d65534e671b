"""A run's life around the training loop: owning the run folder, finding the checkpoint to resume from (and the
config changes that resume makes), recording each start, and finishing: the exported generator, the last
grid, the loss plot and the progress GIF.

Only the main process holds the run folder's lock and writes its files; `open()` hands every rank what it
found.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import yaml
from accelerate import Accelerator
from torch import nn

from dcgan import hardware
from dcgan.config import Config, change_lines, resume_changes, to_dict
from dcgan.data import ensure_dataset
from dcgan.distributed import on_main
from dcgan.errors import UserError
from dcgan.models.file import export_generator
from dcgan.run import checkpoint
from dcgan.run.layout import RunDir
from dcgan.run.lock import RunLock, claim
from dcgan.run.pictures import make_gif, plot_losses
from dcgan.run.tracking import RunLog
from dcgan.runtime import on_cpu, resolve_precision


def settle_precision(cfg: Config) -> tuple[Config, str]:
    """`cfg` with `train.mixed_precision=auto` replaced by the precision it stands for, and why: a run that resumes
    keeps the precision its checkpoint trained in (the precision defines the run), a new one takes what this
    machine computes best (dcgan/runtime.py's resolve_precision). An explicit precision is kept as it is."""
    if cfg.train.mixed_precision != "auto":
        return cfg, "as configured"
    started = _started_in(cfg)
    if started is None:
        precision, why = resolve_precision(cfg.train)
    else:
        precision, why = started[1], f"auto: the precision this run started with ({started[0]})"
        emulated = precision == "bf16" and on_cpu(cfg.train) and hardware.cpu_has_bf16() is False
        if emulated and not cfg.train.allow_emulated_bf16:
            raise UserError(
                f"{started[0]} was trained in bf16 (train.mixed_precision=auto on a machine with native bf16); "
                f"this CPU ({hardware.cpu_name()}) would emulate it, several times slower: resume it on such a "
                "machine, or set train.allow_emulated_bf16=true to continue here"
            )
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mixed_precision=precision)), why


def _started_in(cfg: Config) -> tuple[Path, str] | None:
    """(checkpoint, its precision) of the checkpoint this start would resume from, if any (read before the run
    folder is claimed, by every rank: every machine sees the run folder)."""
    if cfg.resume == "never":
        return None
    run = RunDir(Path(cfg.output_dir))
    candidates = [Path(cfg.resume)] if cfg.resume != "auto" else checkpoint.list_checkpoints(run.checkpoints)
    for path in reversed(candidates):
        precision = (checkpoint.read_config(path) or {}).get("train", {}).get("mixed_precision")
        if precision is not None:
            return path, precision
    return None


class Session:
    def __init__(self, cfg: Config, accelerator: Accelerator):
        self.cfg, self.accelerator = cfg, accelerator
        self.run = RunDir(Path(cfg.output_dir))
        self.lock: RunLock | None = None  # the main process's hold on the run folder
        self.resumed_from: Path | None = None
        self.changes: dict[str, tuple] = {}  # {key: (old, new)} of the keys the resume changes

    def open(self) -> None:
        """Own a writable run folder (the main process), make the dataset ready (every rank: a folder's images
        are decoded by all of them), then find the checkpoint to resume from and the config changes that
        resume makes (refused if any defines the run): collectives, a UserError on any rank raised on all."""
        on_main(self.accelerator, self._claim)
        ensure_dataset(self.cfg.data, self.accelerator)
        found, self.changes = on_main(self.accelerator, self._resume_point)
        self.resumed_from = Path(found) if found else None

    def _claim(self) -> None:
        self.lock = claim(self.run.root, self.cfg.fault.lock_stale_s, self.cfg.fault.lock_wait_s)

    def _resume_point(self) -> tuple[str | None, dict[str, tuple]]:
        found = checkpoint.resolve_resume(self.run.checkpoints, self.cfg.resume)
        return (str(found), allowed_changes(found, self.cfg)) if found else (None, {})

    def release(self) -> None:
        """Give the run folder up (main process; other ranks hold nothing)."""
        if self.lock is not None:
            self.lock.release()

    @property
    def lost(self) -> str | None:
        """Who took the run folder over while this trainer was frozen, if anyone did (main process)."""
        return self.lock.lost if self.lock is not None else None

    def start(self, log: RunLog, total: int, per_epoch: int, step: int, precision_why: str) -> None:
        """Record this start: the resolved config, the lines that say what runs where, run_history.jsonl.
        `precision_why`: why the run trains in its precision (settle_precision)."""
        cfg, acc = self.cfg, self.accelerator
        if acc.is_main_process:  # only once the run is accepted: a refused resume leaves the folder as it was
            self.run.config.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        if self.resumed_from is not None:
            log.print(f"resumed from {self.resumed_from} at step {step}")
        if self.changes:
            changed = "; ".join(change_lines(self.changes))
            log.print(f"changed since the checkpoint (recorded in {self.run.history.name}): {changed}")
        log.print(
            f"training {total} steps ({per_epoch} per epoch) on {acc.num_processes} process(es), "
            f"{acc.device.type}, precision {cfg.train.mixed_precision}"
            f"{'' if precision_why == 'as configured' else f' ({precision_why})'}, global batch "
            f"{cfg.train.batch_size * acc.num_processes}; run folder {self.run}"
        )
        log.start(self.changes, precision_why)

    def export(self, generator: nn.Module, step: int, classes: tuple[str, ...]) -> None:
        """Main process: `generator` (the moving average if the run keeps one) as RUN/generator.safetensors."""
        weights = "ema" if self.cfg.train.ema_decay else "last"
        export_generator(self.run.generator, generator, self.cfg, step, weights, classes)

    def already_finished(self, step: int, total: int, export: Callable[[], None]) -> None:
        """Main process: say that there is nothing to train, and change nothing but a missing generator file."""
        if not self.accelerator.is_main_process:
            return
        line = (
            f"{self.run} is finished at step {step} (this config trains {total} "
            "steps): nothing to do; raise train.epochs or train.max_steps to train further"
        )
        if not self.run.generator.is_file():
            export()
            line += f"; wrote its missing {self.run.generator.name}"
        print(line, flush=True)

    def finish(self, log: RunLog, export: Callable[[], None], last_grid: Callable[[], None], step: int,
               last_eval: dict[str, float]) -> None:  # fmt: skip
        """The end of a run that trained: on the main process the generator file (also a W&B model artifact),
        the last grid, the loss plot and the GIF; then the trackers are finished on every rank."""
        if self.accelerator.is_main_process:
            export()
            log.model_artifact(self.run.generator, step, last_eval)
            last_grid()
            self.plot()
            make_gif(self.run.samples, self.run.progress_gif)
            log.print(f"done: {self.run.generator}")
        log.close()

    def plot(self) -> None:
        if self.accelerator.is_main_process and self.run.metrics.is_file():
            plot_losses(self.run.metrics, self.run.loss_plot)


def allowed_changes(path: Path, cfg: Config) -> dict[str, tuple]:
    """The changes a resume from checkpoint `path` under `cfg` makes to keys that may change (run length,
    learning rates, logging, ...); a UserError listing every changed key that defines the run instead."""
    problem = checkpoint.verify(path)
    if problem is not None:
        raise UserError(f"cannot resume from {path}: {problem}")
    saved = checkpoint.read_config(path)
    if saved is None:  # written before checkpoints held their config: load() still compares the model
        return {}
    fixed, free = resume_changes(saved, cfg)
    if fixed:
        lines = "".join(f"\n  {line}" for line in change_lines(fixed))
        raise UserError(
            f"cannot resume from {path}: these settings define the run and differ from its checkpoint's:{lines}\n"
            "set them back to continue this run, or train into another output_dir (or with resume=never "
            "into an empty one)"
        )
    return free
