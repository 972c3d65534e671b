"""The training loop: one GAN iteration per batch (dcgan/train/step.py), then the periodic work it lists as data,
each `Every` so many steps or epochs: log, stop check, sample, checkpoint, loss plot, evaluate.

The run's life around the loop (the run folder, resume, start records, the finish) is dcgan/run/session.py's;
the wiring from the config is dcgan/train/build.py's; what a checkpoint holds is dcgan/train/state.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dcgan.config import Config
from dcgan.data import to_model_range
from dcgan.errors import Stopped
from dcgan.eval.evaluation import Evaluator
from dcgan.io.images import save_grid
from dcgan.models.sampling import render
from dcgan.run import checkpoint
from dcgan.run.pictures import fixed_inputs, grid_caption
from dcgan.run.session import Session, settle_precision
from dcgan.run.tracking import Meter, RunLog
from dcgan.runtime import bare_model, make_accelerator
from dcgan.train.ada import AdaptiveAugment
from dcgan.train.build import build
from dcgan.train.schedule import set_learning_rates
from dcgan.train.state import TrainState
from dcgan.train.step import GANStep, StepResult
from dcgan.train.stop import StopCheck


@dataclass(frozen=True)
class Every:
    """Work the loop does after a step: every `steps` steps, at the end of every `epochs`-th epoch, and after
    step `also_step` and at the end of epoch `also_epoch` (the run's last ones)."""

    name: str
    run: Callable[[], None]
    steps: int = 0
    epochs: int = 0
    also_step: int = -1
    also_epoch: int = -1

    def due_by_step(self, step: int) -> bool:
        return bool(self.steps) and step % self.steps == 0 or step == self.also_step

    def due(self, step: int, epoch: float) -> bool:
        if self.due_by_step(step):
            return True
        if not (self.epochs and float(epoch).is_integer()):
            return False
        return int(epoch) % self.epochs == 0 or int(epoch) == self.also_epoch


class Trainer:
    def __init__(self, cfg: Config):
        cfg, self.precision_why = settle_precision(cfg)  # train.mixed_precision=auto made concrete
        self.cfg = cfg
        self.accelerator = acc = make_accelerator(cfg)
        self.session = Session(cfg, acc)
        try:
            self.session.open()
            self.parts = parts = build(cfg, acc)
            self.global_batch = cfg.train.batch_size * acc.num_processes
            ada = None
            if cfg.train.ada_target:  # adjusted at the stop check's cadence: global batch x check_every images
                ada = AdaptiveAugment(cfg.train.ada_augment, cfg.train.ada_target, cfg.train.ada_ramp_kimg,
                                      self.global_batch * cfg.fault.check_every, acc)  # fmt: skip
            self.step = GANStep(acc, (parts.G, parts.D), (parts.opt_g, parts.opt_d), cfg.train, cfg.optim,
                                cfg.model.z_dim, parts.num_classes, parts.noise, cfg.data.pixel_range, ada)  # fmt: skip
            self.state = TrainState(cfg, acc, (parts.G, parts.D), (parts.opt_g, parts.opt_d), parts.noise,
                                    self._layout(), parts.average, parts.classes, ada)  # fmt: skip
            self.progress = self.state.progress  # the same object: the loop advances what checkpoints save
            self.evaluator = Evaluator(cfg.data, cfg.eval, cfg.seed, acc, self.session.run)
            if self.session.resumed_from is not None:
                self.state.load(self.session.resumed_from, parts.batches.steps_per_epoch)
        except BaseException:
            self.session.release()
            raise
        set_learning_rates(parts.opt_g, parts.opt_d, cfg.optim, self.global_batch, self.progress.step)
        self.fixed_noise, self.fixed_labels, self.grid_columns = fixed_inputs(
            cfg.seed, cfg.model.z_dim, parts.num_classes, acc.device
        )
        self.stop = StopCheck(acc, cfg.fault, self.session.run)
        self.meter = Meter(acc.device)
        self.last_eval: dict[str, float] = {}  # the newest evaluation's logged values (main process)
        self._order: torch.Tensor | None = None
        self._order_epoch = -1

    def _layout(self) -> dict[str, int]:
        """What fixes the data order and the per-rank streams: a resumed run must match it exactly."""
        acc, batches = self.accelerator, self.parts.batches
        return {"world_size": acc.num_processes, "batch_size": self.cfg.train.batch_size,
                "num_samples": batches.num_samples}  # fmt: skip

    def total_steps(self) -> int:
        total = self.cfg.train.epochs * self.parts.batches.steps_per_epoch
        return min(total, self.cfg.train.max_steps) if self.cfg.train.max_steps else total

    def fit(self) -> None:
        """Train to the configured length (a finished run is left as it is); the run folder is released
        whatever happens.

        Every rank returns only once every rank is done, the main process's files included: a rank that
        fails at the end then fails the others too, instead of leaving their launchers waiting for its."""
        try:
            if self.progress.step >= self.total_steps():
                self.session.already_finished(self.progress.step, self.total_steps(), self._export)
            else:
                self._train()
            self.accelerator.wait_for_everyone()
        finally:
            self.session.release()

    def _train(self) -> None:
        total, p = self.total_steps(), self.progress
        self.log = RunLog(self.accelerator, self.cfg, self.session.run, total, p.step)
        self.session.start(self.log, total, self.parts.batches.steps_per_epoch, p.step, self.precision_why)
        self.meter = Meter(self.accelerator.device)  # times from here, not from construction
        self.state.clock.start()
        self.stop.signals.install()
        try:
            self._loop(total)
        except Stopped:
            self.log.close()
            raise
        finally:
            self.stop.signals.uninstall()
        self.session.finish(self.log, self._export, self._sample_fixed, p.step, self.last_eval)

    def _actions(self, total: int) -> list[Every]:
        cfg = self.cfg
        actions = [
            Every("log", self._log, steps=cfg.log.every_steps, also_step=total),
            # Before the stop check: a run stopped (and checkpointed) at this step has adjusted p, as a straight one.
            Every("adapt augmentation", self._adapt, steps=cfg.fault.check_every if cfg.train.ada_target else 0),
            Every("stop check", self._check_stop, steps=cfg.fault.check_every),
            Every("sample", self._sample_fixed, steps=cfg.log.sample_every, epochs=1),
            Every("checkpoint", self._save_once, steps=cfg.checkpoint.every_steps, epochs=1),
            Every("loss plot", self.session.plot, epochs=1),
        ]
        if self.evaluator.enabled:
            every_epochs = cfg.eval.every_epochs
            actions.append(Every("evaluate", self._evaluate, steps=cfg.eval.every_steps, epochs=every_epochs,
                                 also_epoch=cfg.train.epochs if every_epochs else -1))  # fmt: skip
        return actions

    def _loop(self, total: int) -> None:
        p = self.progress
        actions = self._actions(total)
        log = actions[0]
        self._saved_at = p.step
        while p.step < total:
            self.advance(measure=log.due_by_step(p.step + 1))
            self.log.advance()
            epoch = self._epochs()
            for action in actions:
                if action.due(p.step, epoch):
                    action.run()
        self._save_once()

    def advance(self, measure: bool = False) -> StepResult:
        """The hot path of one iteration: next batch of this rank's shard, the GAN step, progress.

        No host sync: the batch is gathered from the on-device split, the metrics stay on the device.
        """
        p, parts, per_epoch = self.progress, self.parts, self.parts.batches.steps_per_epoch
        if self._order is None or self._order_epoch != p.epoch:
            self._order, self._order_epoch = parts.batches.indices(p.epoch).to(parts.images.index_device), p.epoch
        rows = self._order[p.batch_in_epoch]
        if p.step < self.cfg.optim.warmup_steps:
            set_learning_rates(parts.opt_g, parts.opt_d, self.cfg.optim, self.global_batch, p.step)
        real = to_model_range(parts.images.batch(rows), self.cfg.data.pixel_range)
        labels = parts.labels[rows].to(real.device, non_blocking=True) if parts.labels is not None else None
        result = self.step(real, labels, p.step, measure)
        if parts.average is not None:
            parts.average.update(p.step)
        self.meter.add(result.stats, result.grad_norms)
        p.step += 1
        p.batch_in_epoch += 1
        self.stop.nonfinite.update(torch.stack([result.stats["loss_D"], result.stats["loss_G"]]), p.step)
        if p.batch_in_epoch == per_epoch:
            p.epoch, p.batch_in_epoch = p.epoch + 1, 0
        return result

    # -- the periodic work ------------------------------------------------------------------------

    def _epochs(self) -> float:
        """Epochs trained so far, fractional mid-epoch (a whole number at an epoch end)."""
        return self.progress.epoch + self.progress.batch_in_epoch / self.parts.batches.steps_per_epoch

    def _log(self) -> None:
        """Rank-averaged metrics of the steps since the last log (one all-reduce), plus the current state."""
        acc, parts = self.accelerator, self.parts
        values, steps, seconds = self.meter.flush(acc)
        values["lr_D"] = parts.opt_d.param_groups[0]["lr"]
        values["lr_G"] = parts.opt_g.param_groups[0]["lr"]
        values["images_per_s"] = steps * self.global_batch / seconds
        values["epoch"] = self._epochs()
        if acc.scaler is not None:
            values["loss_scale"] = acc.scaler.get_scale()
        if acc.device.type == "cuda":
            values["gpu_mem_GB"] = torch.cuda.max_memory_allocated(acc.device) / 2**30
        self.log.scalars(values, self.progress.step)

    def _adapt(self) -> None:
        self.step.ada.adjust()

    def _check_stop(self) -> None:
        run = self.session.run
        self.stop(self.progress.step, self.session.lost, self.save, lambda: checkpoint.latest_valid(run.checkpoints))

    def sampler(self) -> torch.nn.Module:
        """The G that samples, evaluates and is exported: the moving average if on, else the bare G."""
        average = self.parts.average
        return average.generator() if average is not None else bare_model(self.accelerator, self.parts.G)

    def _sample_fixed(self) -> None:
        """Main process: a grid from the run's fixed noise, through `sampler()` in eval mode."""
        step = self.progress.step
        path = self.session.run.sample_grid(step)
        if not self.accelerator.is_main_process or path.exists():
            return
        images = render(self.sampler(), self.fixed_noise, self.cfg.data.pixel_range, self.fixed_labels)
        self.log.image(save_grid(images, path, self.grid_columns), step, grid_caption(self.parts.classes))

    def _save_once(self) -> None:
        """A checkpoint of this step unless one was just saved."""
        if self._saved_at != self.progress.step:
            self.save()
            self._saved_at = self.progress.step

    def save(self) -> Path | None:
        """Checkpoint the full training state (a collective: every rank must call it).

        Skipped while any rank's losses are non-finite, so the newest checkpoint is always a good one.
        """
        streaks = self.accelerator.gather(self.stop.nonfinite.streak[None]).tolist()
        if max(streaks) > 0:
            self.log.print(f"step {self.progress.step}: losses are NaN/inf, checkpoint skipped")
            return None
        return self.state.save()

    def _evaluate(self) -> None:
        """A collective; the main process logs the row and keeps it for the model card."""
        p, clock = self.progress, self.state.clock
        train_s = clock.seconds()
        with clock.pause():
            row = self.evaluator.evaluate(self.sampler(), p.step, self._epochs(), train_s)
        if row is not None:
            values, line = row
            self.last_eval = {**values, "step": p.step}
            self.log.record(values, p.step, line)

    def _export(self) -> None:
        self.session.export(self.sampler(), self.progress.step, self.parts.classes)
