"""Everything a checkpoint holds, gathered in one place: both networks, G's moving average, both
optimisers, the fp16 scaler, the per-rank noise streams and where training stands. The Trainer runs
the loop; this saves the loop's state and puts it back exactly (dcgan/run/checkpoint.py does the files).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from dcgan.config import Config, resolved_model_name, to_dict
from dcgan.distributed import gather_per_rank, on_main
from dcgan.errors import UserError
from dcgan.io.files import read_weights
from dcgan.models.file import generator_metadata
from dcgan.rng import capture, restore
from dcgan.run import checkpoint
from dcgan.run.layout import RunDir
from dcgan.runtime import bare_model
from dcgan.train.ada import AdaptiveAugment
from dcgan.train.ema import GeneratorAverage


@dataclass
class Progress:
    """Where training stands; with the RNG states, all a checkpoint needs to continue exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


class TrainClock:
    """Seconds this run has trained, over all its jobs, with evaluations left out: the x axis of time to
    quality. Checkpoints save it; it runs only between `start()` and the end of the job."""

    def __init__(self) -> None:
        self.before = 0.0  # seconds up to the checkpoint this job resumed from
        self.started: float | None = None
        self.paused = 0.0  # seconds of this job spent in `pause()`

    def start(self) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        if self.started is None:
            return self.before
        return self.before + time.perf_counter() - self.started - self.paused

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """`with clock.pause():` the time inside does not count."""
        entered = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - entered


def _legacy_model(cfg: Config, saved: dict) -> dict:
    """The model config in the shape checkpoints saved before they held their whole config: only the keys
    they knew, with `auto` resolved to the architecture it picks (then the only one: the 28 px dcgan)."""
    now = to_dict(cfg.model)
    now["name"] = resolved_model_name(cfg.model.name, cfg.data.image_size)
    return {key: now[key] for key in saved if key in now}


class TrainState:
    def __init__(
        self,
        cfg: Config,
        acc: Accelerator,
        modules: tuple[torch.nn.Module, torch.nn.Module],
        optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
        noise: torch.Generator,
        layout: dict[str, int],
        average: GeneratorAverage | None,
        classes: tuple[str, ...] = (),
        ada: AdaptiveAugment | None = None,
    ):
        self.cfg, self.accelerator = cfg, acc
        self.G, self.D = modules
        self.opt_g, self.opt_d = optimizers
        self.noise = noise
        self.average = average
        self.layout = layout
        self.classes = classes  # a conditional G's class names, in its checkpointed generator files
        self.ada = ada  # adaptive augmentation's p and signal: saved per rank
        self.progress = Progress()
        self.clock = TrainClock()
        self.root = RunDir(Path(cfg.output_dir)).checkpoints

    def load(self, path: Path, steps_per_epoch: int) -> None:
        acc = self.accelerator
        g_state, d_state, state = checkpoint.load_checkpoint(path)
        checks = [("run layout", state["layout"], self.layout)]
        if "model" in state:  # written before checkpoints held their config (see allowed_changes)
            checks.append(("model", state["model"], _legacy_model(self.cfg, state["model"])))
        for section, saved, now in checks:
            if saved != now:
                diff = ", ".join(f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in sorted(now) if saved.get(k) != now[k])
                raise UserError(
                    f"cannot resume from {path}: the {section} changed ({diff}); "
                    "resume with the same settings and number of processes, or start a new output_dir"
                )
        bare_model(acc, self.G).load_state_dict(g_state)
        bare_model(acc, self.D).load_state_dict(d_state)
        self.opt_g.load_state_dict(state["optim_g"])
        self.opt_d.load_state_dict(state["optim_d"])
        if self.average is not None:
            self._load_average(path)
        # The config's betas win over the saved ones, so a resume can change them (the trainer then sets
        # the learning rates for this step: dcgan/train/schedule.py).
        for optimizer in (self.opt_g, self.opt_d):
            for group in optimizer.param_groups:
                group["betas"] = self.cfg.optim.betas
        if acc.scaler is not None and "scaler" in state:
            acc.scaler.load_state_dict(state["scaler"])
        restore(state["rng"][acc.process_index], self.noise)
        if self.ada is not None and "ada" in state:  # absent: saved without adaptive augmentation; p starts at 0
            self.ada.load_state_dict(state["ada"][acc.process_index])
        vars(self.progress).update(state["progress"])
        self.clock.before = float(state.get("train_seconds", 0.0))  # absent before it was saved
        p = self.progress
        if p.batch_in_epoch == steps_per_epoch:  # saved by an older version at an epoch end
            p.epoch, p.batch_in_epoch = p.epoch + 1, 0

    def _load_average(self, path: Path) -> None:
        file = path / checkpoint.AVERAGE_FILE
        if file.is_file():
            self.average.load_state_dict(read_weights(file)[0])
        else:  # saved with train.ema_decay=0: the average starts here, from the weights just loaded
            self.average.load_state_dict(bare_model(self.accelerator, self.G).state_dict())
            if self.accelerator.is_main_process:
                print(f"{path} holds no moving average of G; it starts from the loaded weights", flush=True)

    def save(self) -> Path:
        """Write a checkpoint of this step (a collective: every rank must call it)."""
        rng_states = gather_per_rank(self.accelerator, capture(self.noise))
        ada_states = gather_per_rank(self.accelerator, self.ada.state_dict()) if self.ada is not None else None
        return on_main(self.accelerator, lambda: self._write(rng_states, ada_states))

    def _write(self, rng_states: list, ada_states: list | None) -> Path:
        acc, step = self.accelerator, self.progress.step
        state = {
            "optim_g": self.opt_g.state_dict(),
            "optim_d": self.opt_d.state_dict(),
            "progress": vars(self.progress).copy(),
            "train_seconds": self.clock.seconds(),
            "rng": rng_states,
            "layout": self.layout,
        }
        if acc.scaler is not None:
            state["scaler"] = acc.scaler.state_dict()
        if ada_states is not None:
            state["ada"] = ada_states
        try:
            return checkpoint.save_checkpoint(
                self.root,
                step,
                bare_model(acc, self.G).state_dict(),
                bare_model(acc, self.D).state_dict(),
                state,
                # G's model config and pixel range too, so `dcgan sample|eval` read a checkpoint's generator.
                {**generator_metadata(self.cfg, step, classes=self.classes), "format": checkpoint.FORMAT},
                self.cfg.checkpoint.keep_last,
                self.average.state_dict() if self.average is not None else None,
                to_dict(self.cfg),
            )
        except OSError as e:
            reason = e.strerror or str(e)
            previous = checkpoint.latest_valid(self.root)
            kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
            raise UserError(
                f"cannot write checkpoint {checkpoint.checkpoint_name(step)} in {self.root} ({reason}); {kept}"
            ) from None
