"""Stopping safely: preemption signals, non-finite losses, and the exit codes a job script can act on.

Neither check costs a host sync per step: a signal only sets a flag, non-finite losses are counted on
the device, and the ranks compare both every `fault.check_every` steps with one tiny gather.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import torch

from dcgan.errors import EXIT_NONFINITE, EXIT_PEER_LOST, EXIT_PREEMPTED, EXIT_USER_ERROR  # noqa: F401 - re-exported

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
