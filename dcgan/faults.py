"""Stopping safely: preemption signals, non-finite losses, and the exit codes a job script can act on.

Neither check costs a host sync per step: a signal only sets a flag, non-finite losses are counted on
the device, and the ranks compare both every `fault.check_every` steps with one tiny gather.
"""

from __future__ import annotations

import os
import signal

import torch

from dcgan.errors import EXIT_NONFINITE, EXIT_PREEMPTED, EXIT_USER_ERROR  # noqa: F401 - re-exported

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignals:
    """The first SIGTERM/SIGUSR1 asks for a checkpoint and a clean stop; a second one exits at once."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

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
