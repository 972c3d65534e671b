"""Stopping safely: preemption signals, a launcher that is gone, non-finite losses, a run folder taken over,
each ending the run with the exit code a job script acts on (dcgan/errors.py).

None of it costs a host sync per step: a signal only sets a flag, non-finite losses are counted on the
device, and the ranks agree on all of it every `fault.check_every` steps with one tiny gather (`StopCheck`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator

from dcgan import distributed
from dcgan.config import FaultConfig
from dcgan.errors import EXIT_NONFINITE, EXIT_PREEMPTED, EXIT_USER_ERROR, Stopped

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_PR_SET_PDEATHSIG = 1


class StopSignals:
    """The first SIGTERM/SIGUSR1 asks for a checkpoint and a clean stop; a second one exits at once.

    A process started by a launcher (torchrun, `accelerate launch`) also gets SIGTERM when that launcher
    dies: its launcher starts it in a session of its own and never tells it, so a launcher killed with -9
    would leave it training with the other machines, and their launchers waiting for it. `orphaned` then
    says why the signal came."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._launcher: int | None = None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        if "TORCHELASTIC_RUN_ID" in os.environ and sys.platform == "linux":
            self._launcher = os.getppid()
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != self._launcher:  # it died before it could be watched
                os.kill(os.getpid(), signal.SIGTERM)

    @property
    def orphaned(self) -> bool:
        """Whether the launcher that started this process is gone."""
        return self._launcher is not None and os.getppid() != self._launcher

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._launcher is not None:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, 0)
            self._launcher = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None:
            os._exit(128 + signum)  # the user (or the scheduler) insists: no checkpoint, now
        self.received = signum


class NonFiniteWatch:
    """Counts consecutive steps with a non-finite loss, on the device, and when the streak began."""

    def __init__(self, device: torch.device):
        self.streak = torch.zeros((), dtype=torch.long, device=device)
        self.since = torch.zeros((), dtype=torch.long, device=device)

    def update(self, losses: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(losses).all()
        self.since = torch.where(bad & (self.streak == 0), step, self.since)
        self.streak = torch.where(bad, self.streak + 1, torch.zeros_like(self.streak))


class StopCheck:
    """What the ranks agree on every `fault.check_every` steps, in order: the run folder taken over (stop without
    saving, exit 2), losses non-finite on any rank for `fault.max_nonfinite_steps` steps (stop without saving,
    exit 4), a stop signal or a gone launcher on any rank (one checkpoint together, exit 3)."""

    def __init__(self, accelerator: Accelerator, fault: FaultConfig, run_dir: object):
        self.accelerator, self.fault, self.run_dir = accelerator, fault, run_dir
        self.signals = StopSignals()
        self.nonfinite = NonFiniteWatch(accelerator.device)

    def __call__(
        self, step: int, lost: str | None, save: Callable[[], Path | None], newest: Callable[[], Path | None]
    ) -> None:
        """Raise `Stopped` if any rank must stop. `lost`: who took the run folder over, if anyone did (main process);
        `save` checkpoints (a collective); `newest` is the newest valid checkpoint."""
        acc, signals = self.accelerator, self.signals
        flags = [signals.received or 0, int(lost is not None), int(signals.orphaned)]
        streak = torch.stack([self.nonfinite.streak, self.nonfinite.since])
        local = torch.cat([torch.tensor(flags, device=acc.device), streak])
        received, losses, orphans, streaks, since = acc.gather(local[None]).T.tolist()
        if any(losses):
            owner = f": {lost}" if lost else ""
            raise Stopped(
                f"another trainer took the run folder {self.run_dir} over{owner}; stopped at step "
                f"{step} without saving, so as not to overwrite its work",
                EXIT_USER_ERROR,
            )
        worst = max(streaks)
        if worst >= self.fault.max_nonfinite_steps:
            kept = f"the last good checkpoint is {newest()}" if newest() else "no checkpoint had been saved yet"
            raise Stopped(
                f"losses were NaN/inf for {worst} consecutive steps since step {since[streaks.index(worst)]} "
                f"(now step {step}); nothing was saved since, {kept}; "
                "lower the learning rates, set optim.clip_d/clip_g, or use bf16 instead of fp16",
                EXIT_NONFINITE,
            )
        if any(received):
            why = f"{signal.Signals(max(received)).name} received"
            if any(orphans):
                gone = ", ".join(f"rank {r}, {distributed.who(r)}" for r, orphan in enumerate(orphans) if orphan)
                why = f"the launcher of {gone} is gone (its processes got SIGTERM)"
            path = save()
            raise Stopped(
                f"{why}: checkpoint {path} saved at step {step}; run again with resume=auto to continue",
                EXIT_PREEMPTED,
            )
