"""The GAN training loop: a G step and a D step per batch (`train.g_first` picks the order), each with its optimiser.

Distribution and precision come from the Accelerator (dcgan/distributed.py). Two DDP traps shape the
step: D is called twice per D step (see the broadcast_buffers note there), and the G step must not
all-reduce D's gradients, so it runs D under `no_sync` and back-propagates into G's parameters only.
"""

from __future__ import annotations

import signal
from pathlib import Path

import torch
import yaml

from dcgan import checkpoint, peers
from dcgan.augment import diff_augment
from dcgan.config import Config, change_lines, to_dict
from dcgan.data import ImageStore, ShardedBatches, ensure_dataset, load_dataset, to_model_range
from dcgan.distributed import (
    agree,
    bare_model,
    configure_backends,
    hot_optimizer,
    make_accelerator,
    memory_format,
    on_main,
)
from dcgan.ema import GeneratorAverage
from dcgan.errors import Stopped, UserError
from dcgan.evaluation import Evaluator
from dcgan.faults import EXIT_NONFINITE, EXIT_PREEMPTED, EXIT_USER_ERROR, NonFiniteWatch, StopSignals
from dcgan.losses import LOSSES, Stats, r1_penalty
from dcgan.models import build_models
from dcgan.pictures import make_gif, plot_losses
from dcgan.rng import derive_seed
from dcgan.rundir import RunDir
from dcgan.runlock import RunLock, claim
from dcgan.sampling import export_generator, fixed_inputs, grid_caption, render, save_grid
from dcgan.schedule import set_learning_rates
from dcgan.state import TrainState, allowed_changes
from dcgan.tracking import Meter, RunLog


class Trainer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.accelerator = acc = make_accelerator(cfg)
        self.run = RunDir(Path(cfg.output_dir))
        self.lock: RunLock | None = None  # the main process's hold on the run folder
        try:
            self.resumed_from, self.changes = on_main(acc, self._prepare_run)
            self._build()
        except BaseException:
            self.release()
            raise

    def _build(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        dataset = agree(acc, lambda: load_dataset(cfg.data))  # machines may hold different copies of the data
        self.images = ImageStore(dataset.images, acc.device, cfg.data.device_budget_gb, acc.is_main_process)
        self.classes, self.labels = self._labels(dataset)
        self.batches = ShardedBatches(
            len(self.images), cfg.train.batch_size, acc.num_processes, acc.process_index, cfg.seed
        )
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        num_classes = len(self.classes) if self.labels is not None else 0
        generator, discriminator = build_models(cfg.model, dataset.image_size, dataset.channels, num_classes)
        if cfg.train.sync_batchnorm and acc.num_processes > 1:
            generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        if memory_format(cfg, acc.device) == "channels_last":
            generator = generator.to(memory_format=torch.channels_last)
            discriminator = discriminator.to(memory_format=torch.channels_last)
        configure_backends(cfg, acc.device)
        # Fused Adam: one kernel for all parameters, and on a GPU the fp16 scaler's skip check stays on
        # the device (no host sync per step). The parameters must be on the device when it is created.
        generator, discriminator = generator.to(acc.device), discriminator.to(acc.device)
        opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas, fused=True)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas, fused=True)
        self.G, self.D, self.opt_g, self.opt_d = acc.prepare(generator, discriminator, opt_g, opt_d)
        self._hot_opt_g, self._hot_opt_d = hot_optimizer(self.opt_g), hot_optimizer(self.opt_d)
        self._D_eager = getattr(self.D, "_orig_mod", self.D)  # torch.compile's wrapper keeps the module it wraps
        self._cuda_graphs = cfg.train.compile and acc.state.dynamo_plugin.mode == "reduce-overhead"
        torch.manual_seed(derive_seed(cfg.seed, "torch", acc.process_index))
        self.noise = torch.Generator(acc.device).manual_seed(derive_seed(cfg.seed, "noise", acc.process_index))
        self.fixed_noise, self.fixed_labels, self.grid_columns = fixed_inputs(cfg, num_classes, acc.device)
        self.grad_norms = torch.zeros(2, device=acc.device)
        self.r1 = torch.zeros((), device=acc.device)  # the newest lazily computed E||grad_x D(x)||^2
        self.nonfinite = NonFiniteWatch(acc.device)
        self.signals = StopSignals()
        self._measure = False
        self.loss = LOSSES[cfg.train.loss]
        self.meter = Meter(acc.device)
        self._order: torch.Tensor | None = None
        self._order_epoch = -1
        # What fixes the data order and the per-rank streams: a resumed run must match it exactly.
        layout = {"world_size": acc.num_processes, "batch_size": cfg.train.batch_size}
        layout["num_samples"] = self.batches.num_samples
        decay = cfg.train.ema_decay
        self.average = GeneratorAverage(bare_model(acc, self.G), decay) if decay else None
        self.state = TrainState(
            cfg, acc, (self.G, self.D), (self.opt_g, self.opt_d), self.noise, layout, self.average, self.classes
        )
        self.progress = self.state.progress  # the same object: the loop advances what checkpoints save
        self.clock = self.state.clock
        self.evaluator = Evaluator(cfg, acc, self.run)
        if self.resumed_from is not None:
            self.state.load(Path(self.resumed_from), self.batches.steps_per_epoch)
        self.global_batch = cfg.train.batch_size * acc.num_processes
        set_learning_rates(self.opt_g, self.opt_d, cfg.optim, self.global_batch, self.progress.step)

    # -- setup -------------------------------------------------------------------------------------

    def _labels(self, dataset) -> tuple[tuple[str, ...], torch.Tensor | None]:
        """(class names, labels where the batches' indices are) for a conditional model; ((), None) otherwise."""
        if not self.cfg.model.conditional:
            return (), None
        if dataset.labels is None or len(dataset.classes) < 2:
            raise UserError(
                f"model.conditional=true needs labelled data with 2 or more classes; {self.cfg.data.root} has none "
                "(a folder's classes are its first-level subfolders)"
            )
        return dataset.classes, dataset.labels.to(self.images.index_device)

    def _prepare_run(self) -> tuple[str | None, dict[str, tuple]]:
        """Main process: own a writable run folder, then the dataset, the checkpoint to resume from and
        the config changes that resume makes (refused if any defines the run)."""
        cfg = self.cfg
        self.lock = claim(self.run.root, cfg.fault.lock_stale_s, cfg.fault.lock_wait_s)
        ensure_dataset(cfg.data)
        found = checkpoint.resolve_resume(self.run.checkpoints, cfg.resume)
        return (str(found), allowed_changes(found, cfg)) if found else (None, {})

    def release(self) -> None:
        """Give the run folder up (main process; other ranks hold nothing)."""
        if self.lock is not None:
            self.lock.release()

    # -- one iteration -----------------------------------------------------------------------------

    def train_step(self, real: torch.Tensor, labels: torch.Tensor | None = None, measure: bool = False) -> Stats:
        """One D step and one G step on this rank's batch (and its class `labels`, conditional models); returns
        the losses' named statistics (detached, on the device). With `measure`, both networks' gradient norms
        are kept in `self.grad_norms` (D, G).
        """
        self._measure = measure
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # this iteration's graph outputs replace the last one's
        z = torch.randn(real.shape[0], self.cfg.model.z_dim, device=real.device, generator=self.noise)
        real_in, fake_in = (real,), ()
        if labels is not None:  # the fake classes are drawn uniformly, from the same per-rank stream
            fake_labels = torch.randint(len(self.classes), labels.shape, device=real.device, generator=self.noise)
            real_in, fake_in = (real, labels), (fake_labels,)
        fake = self.G(z, *fake_in)
        if self.cfg.train.g_first:
            g_stats = self._g_step((fake, *fake_in))
            d_stats = self._d_step(real_in, (fake.detach(), *fake_in))
        else:
            d_stats = self._d_step(real_in, (fake.detach(), *fake_in))
            g_stats = self._g_step((fake, *fake_in))
        return {**d_stats, **g_stats}

    def _before_step(self, index: int, module: torch.nn.Module, optimizer, clip: float) -> None:
        """Inside one network's step, after its backward: optional clipping, and its norm on measured steps."""
        if not (clip or self._measure):
            return
        self.accelerator.unscale_gradients(optimizer)  # fp16: the scaler then skips its own unscale
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        else:
            grads = [p.grad.detach().float() for p in module.parameters() if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if self._measure:
            self.grad_norms[index] = norm

    def _discriminate(self, inputs: tuple[torch.Tensor, ...], eager: bool = False) -> torch.Tensor:
        """D's logits for (images,) or (images, classes), the images through DiffAugment when it is on.

        eager: through the uncompiled D (still under DDP) when train.compile is on, for the R1 step's
        double backward, which compiled graphs cannot take."""
        policy = self.cfg.train.diffaugment
        if policy:
            inputs = (diff_augment(inputs[0], policy, self.noise), *inputs[1:])
        return (self._D_eager if eager else self.D)(*inputs)

    def _d_step(self, real: tuple[torch.Tensor, ...], fake: tuple[torch.Tensor, ...]) -> Stats:
        """D's inputs: (images,) or (images, classes).

        On an R1 step the penalty joins D's loss before the one backward: autograd.grad towards the
        images touches no weight gradient, so DDP still all-reduces D's gradients once, in that backward.
        """
        train = self.cfg.train
        self._hot_opt_d.zero_grad(set_to_none=True)
        r1_now = train.r1_gamma > 0 and self.progress.step % train.r1_every == 0
        if r1_now:
            real = (real[0].detach().requires_grad_(True), *real[1:])
        # Both through the uncompiled D on an R1 step: a compiled forward in between would bump the version
        # of the BatchNorm running statistics the eager graph saved, and its backward would refuse them.
        real_logits = self._discriminate(real, eager=r1_now)
        fake_logits = self._discriminate(fake, eager=r1_now)
        loss, stats = self.loss.d(real_logits, fake_logits, real_label=train.real_label, scale=train.d_loss_scale)
        if r1_now:
            loss = loss + self._r1_penalty(real_logits, real[0])
        if train.r1_gamma > 0:
            stats["r1"] = self.r1.clone()
        self.accelerator.backward(loss)
        self._before_step(0, self.D, self.opt_d, self.cfg.optim.clip_d)
        self._hot_opt_d.step()
        return stats

    def _r1_penalty(self, real_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The lazy R1 term, gamma/2 x E||grad_x D(x)||^2 times r1_every (fp16: taken through the loss scale);
        keeps E||grad||^2 in `self.r1` for the logs."""
        train, scaler = self.cfg.train, self.accelerator.scaler
        scale = scaler.scale(torch.ones((), device=images.device)) if scaler is not None else None
        penalty, stats = r1_penalty(real_logits, images, train.r1_gamma * train.r1_every, scale)
        self.r1.copy_(stats["r1"])
        return penalty

    def _g_step(self, fake: tuple[torch.Tensor, ...]) -> Stats:
        """D's input: (images,) or (images, classes)."""
        self._hot_opt_g.zero_grad(set_to_none=True)
        # D's forward and backward under no_sync: D's reducer neither expects nor all-reduces
        # gradients, and `inputs=` keeps autograd from computing D's weight gradients at all.
        with self.accelerator.no_sync(self.D):
            loss, stats = self.loss.g(self._discriminate(fake))
            self.accelerator.backward(loss, inputs=list(self.G.parameters()))
        self._before_step(1, self.G, self.opt_g, self.cfg.optim.clip_g)
        self._hot_opt_g.step()
        return stats

    # -- the loop ----------------------------------------------------------------------------------

    def total_steps(self) -> int:
        total = self.cfg.train.epochs * self.batches.steps_per_epoch
        return min(total, self.cfg.train.max_steps) if self.cfg.train.max_steps else total

    def fit(self) -> None:
        """Train to the configured length (a finished run is left as it is); the run folder is released
        whatever happens.

        Every rank returns only once every rank is done, the main process's files included: a rank that
        fails at the end then fails the others too, instead of leaving their launchers waiting for its."""
        try:
            if self.progress.step >= self.total_steps():
                self._already_finished()
            else:
                self._train()
            self.accelerator.wait_for_everyone()
        finally:
            self.release()

    def _train(self) -> None:
        cfg, acc, p = self.cfg, self.accelerator, self.progress
        total, per_epoch = self.total_steps(), self.batches.steps_per_epoch
        if acc.is_main_process:  # only once the run is accepted: a refused resume leaves the folder as it was
            self.run.config.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        self.log = RunLog(acc, cfg, self.run, total, p.step)
        if self.resumed_from is not None:
            self.log.print(f"resumed from {self.resumed_from} at step {p.step}")
        if self.changes:
            changed = "; ".join(change_lines(self.changes))
            self.log.print(f"changed since the checkpoint (recorded in {self.run.history.name}): {changed}")
        self.log.print(
            f"training {total} steps ({per_epoch} per epoch) on {acc.num_processes} process(es), "
            f"{acc.device.type}, precision {cfg.train.mixed_precision}, global batch "
            f"{cfg.train.batch_size * acc.num_processes}; run folder {self.run}"
        )
        self.log.start(self.changes)
        self.meter = Meter(acc.device)  # times from here, not from construction
        self.clock.start()
        self.signals.install()
        try:
            self._loop(total)
        finally:
            self.signals.uninstall()
        self._finish()

    def _already_finished(self) -> None:
        """Main process: say that there is nothing to train, and change nothing but a missing generator file."""
        if not self.accelerator.is_main_process:
            return
        line = (
            f"{self.run} is finished at step {self.progress.step} (this config trains {self.total_steps()} "
            "steps): nothing to do; raise train.epochs or train.max_steps to train further"
        )
        if not self.run.generator.is_file():
            self._export()
            line += f"; wrote its missing {self.run.generator.name}"
        print(line, flush=True)

    def advance(self, measure: bool = False) -> Stats:
        """The hot path of one iteration: next batch of this rank's shard, train step, progress.

        No host sync: the batch is gathered from the on-device split, the metrics stay on the device.
        """
        p, per_epoch = self.progress, self.batches.steps_per_epoch
        if self._order is None or self._order_epoch != p.epoch:
            self._order, self._order_epoch = self.batches.indices(p.epoch).to(self.images.index_device), p.epoch
        rows = self._order[p.batch_in_epoch]
        if p.step < self.cfg.optim.warmup_steps:
            set_learning_rates(self.opt_g, self.opt_d, self.cfg.optim, self.global_batch, p.step)
        real = to_model_range(self.images.batch(rows), self.cfg.data.pixel_range)
        labels = self.labels[rows].to(real.device, non_blocking=True) if self.labels is not None else None
        values = self.train_step(real, labels, measure=measure)
        if self.average is not None:
            self.average.update(p.step)
        self.meter.add(values)
        p.step += 1
        p.batch_in_epoch += 1
        self.nonfinite.update(torch.stack([values["loss_D"], values["loss_G"]]), p.step)
        if p.batch_in_epoch == per_epoch:
            p.epoch, p.batch_in_epoch = p.epoch + 1, 0
        return values

    def _loop(self, total: int) -> None:
        cfg, p = self.cfg, self.progress
        saved_at = p.step
        while p.step < total:
            log_now = (p.step + 1) % cfg.log.every_steps == 0 or p.step + 1 == total
            self.advance(measure=log_now)
            self.log.advance()
            if log_now:
                self._log()
            if p.step % cfg.fault.check_every == 0:
                self._check_stop()
            if cfg.log.sample_every and p.step % cfg.log.sample_every == 0:
                self._sample_fixed()
            if cfg.checkpoint.every_steps and p.step % cfg.checkpoint.every_steps == 0:
                self.save()
                saved_at = p.step
            if p.batch_in_epoch == 0:  # an epoch just ended
                self._sample_fixed()
                self._plot()
                if saved_at != p.step:
                    self.save()
                    saved_at = p.step
            epoch = self._epochs()
            if self.evaluator.due(p.step, epoch):
                train_s = self.clock.seconds()
                with self.clock.pause():
                    self.evaluator.evaluate(self.sampler(), p.step, epoch, self.log, train_s)
        if saved_at != p.step:
            self.save()

    def _check_stop(self) -> None:
        """Every rank learns whether any rank got a stop signal or diverged (one small gather)."""
        acc, p = self.accelerator, self.progress
        lost = self.lock is not None and self.lock.lost is not None
        flags = [self.signals.received or 0, int(lost), int(self.signals.orphaned)]
        streak = torch.stack([self.nonfinite.streak, self.nonfinite.since])
        local = torch.cat([torch.tensor(flags, device=acc.device), streak])
        signals, losses, orphans, streaks, since = acc.gather(local[None]).T.tolist()
        if any(losses):
            owner = f": {self.lock.lost}" if lost else ""
            self.log.close()
            raise Stopped(
                f"another trainer took the run folder {self.run} over{owner}; stopped at step {p.step} "
                "without saving, so as not to overwrite its work",
                EXIT_USER_ERROR,
            )
        worst = max(streaks)
        if worst >= self.cfg.fault.max_nonfinite_steps:
            newest = checkpoint.latest_valid(self.run.checkpoints)
            kept = f"the last good checkpoint is {newest}" if newest else "no checkpoint had been saved yet"
            self.log.close()
            raise Stopped(
                f"losses were NaN/inf for {worst} consecutive steps since step {since[streaks.index(worst)]} "
                f"(now step {p.step}); nothing was saved since, {kept}; "
                "lower the learning rates, set optim.clip_d/clip_g, or use bf16 instead of fp16",
                EXIT_NONFINITE,
            )
        if any(signals):
            name = signal.Signals(max(signals)).name
            if any(orphans):
                gone = ", ".join(f"rank {r}, {peers.who(r)}" for r, orphan in enumerate(orphans) if orphan)
                name = f"the launcher of {gone} is gone (its processes got SIGTERM)"
            else:
                name += " received"
            path = self.save()
            self.log.close()
            raise Stopped(
                f"{name}: checkpoint {path} saved at step {p.step}; run again with resume=auto to continue",
                EXIT_PREEMPTED,
            )

    def _epochs(self) -> float:
        """Epochs trained so far, fractional mid-epoch (a whole number at an epoch end)."""
        return self.progress.epoch + self.progress.batch_in_epoch / self.batches.steps_per_epoch

    def _log(self) -> None:
        """Rank-averaged metrics of the steps since the last log (one all-reduce), plus the current state."""
        acc, p = self.accelerator, self.progress
        norms = {"grad_norm_D": self.grad_norms[0], "grad_norm_G": self.grad_norms[1]}
        values, steps, seconds = self.meter.flush(acc, extra=norms)
        values["lr_D"] = self.opt_d.param_groups[0]["lr"]
        values["lr_G"] = self.opt_g.param_groups[0]["lr"]
        values["images_per_s"] = steps * self.global_batch / seconds
        values["epoch"] = self._epochs()
        if acc.scaler is not None:
            values["loss_scale"] = acc.scaler.get_scale()
        if acc.device.type == "cuda":
            values["gpu_mem_GB"] = torch.cuda.max_memory_allocated(acc.device) / 2**30
        self.log.scalars(values, p.step)

    def sampler(self) -> torch.nn.Module:
        """The G that samples, evaluates and is exported: the moving average if on, else the bare G."""
        return self.average.generator() if self.average is not None else bare_model(self.accelerator, self.G)

    def _sample_fixed(self) -> None:
        """Main process: a grid from the run's fixed noise, through `sampler()` in eval mode."""
        step = self.progress.step
        path = self.run.sample_grid(step)
        if not self.accelerator.is_main_process or path.exists():
            return
        images = render(self.sampler(), self.fixed_noise, self.cfg.data.pixel_range, self.fixed_labels)
        self.log.image(save_grid(images, path, self.grid_columns), step, grid_caption(self.classes))

    def _plot(self) -> None:
        if self.accelerator.is_main_process and self.run.metrics.is_file():
            plot_losses(self.run.metrics, self.run.loss_plot)

    def save(self) -> Path | None:
        """Checkpoint the full training state (a collective: every rank must call it).

        Skipped while any rank's losses are non-finite, so the newest checkpoint is always a good one.
        """
        acc = self.accelerator
        streaks = acc.gather(self.nonfinite.streak[None]).tolist()
        if max(streaks) > 0:
            self.log.print(f"step {self.progress.step}: losses are NaN/inf, checkpoint skipped")
            return None
        return self.state.save()

    def _export(self) -> None:
        weights = "ema" if self.average is not None else "last"
        generator, step = self.sampler(), self.progress.step
        export_generator(self.run.generator, generator, self.cfg, step, weights, self.classes)

    def _finish(self) -> None:
        acc = self.accelerator
        if acc.is_main_process:
            self._export()
            self.log.model_artifact(self.run.generator, self.progress.step, self.evaluator.last)
            self._sample_fixed()
            self._plot()
            make_gif(self.run.samples, self.run.progress_gif)
            self.log.print(f"done: {self.run.generator}")
        self.log.close()
