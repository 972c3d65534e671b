"""One node's launcher under SLURM: `accelerate launch ARGS`, made to pass the job's stop signals on exactly once.

SLURM signals every process of a job step (proctrack/cgroup or linuxproc): this launcher and the training
processes it started. The training processes handle SIGUSR1 and SIGTERM themselves (one joint checkpoint,
then exit 3), so the launcher must neither die of them (SIGUSR1's default action) nor pass them on as
torchrun does with SIGTERM (each training process would see it twice and take the second as "exit now,
without a checkpoint"). So the launcher catches both and does nothing, except in its first seconds:
a signal that arrives before it has started the training processes is passed to them once they exist.
Caught signals are reset to the default in the processes it starts, so one that arrives while they are
still starting up ends them (there is nothing to save yet) instead of being lost.
"""

import os
import runpy
import signal
import sys
import threading
import time
from pathlib import Path

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
_PYTHON = os.path.realpath(sys.executable)
_early: list[int] = []
_lock = threading.RLock()  # a handler and the relay thread must agree on "before the children existed"


def _children() -> list[int]:
    """The training processes: this launcher's children that run this Python (not, say, nvidia-smi)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and os.path.realpath(stat.parent / "exe") == _PYTHON:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return found


def _on_stop(signum: int, frame: object) -> None:
    with _lock:
        if not _children():
            _early.append(signum)


def _pass_on_early_signal() -> None:
    while True:
        with _lock:
            children, early = _children(), _early[:1]
        if children:
            break
        time.sleep(0.1)
    if early:
        time.sleep(0.2)  # let the new processes finish exec, which would drop a signal caught before it
    for signum in early:
        for pid in children:
            os.kill(pid, signum)


def _warn_if_torchrun_forwards_sigterm() -> None:
    from torch.distributed.run import get_args_parser  # after the handlers: importing torch takes seconds

    if not hasattr(get_args_parser().parse_known_args(["train.py"])[0], "signals_to_handle"):
        print(
            "node_launch.py: this torch's torchrun always forwards SIGTERM (torch 2.9 and later let it be turned off), "
            "so a cancelled or preempted job may stop without a checkpoint; SIGUSR1 (time limits) is unaffected",
            file=sys.stderr,
        )


def main() -> None:
    for stop in STOP_SIGNALS:
        signal.signal(stop, _on_stop)
    threading.Thread(target=_pass_on_early_signal, daemon=True).start()
    # torchrun's --signals-to-handle, which `accelerate launch` has no flag for (torchrun reads PET_* defaults).
    os.environ["PET_SIGNALS_TO_HANDLE"] = "SIGINT,SIGHUP,SIGQUIT"
    _warn_if_torchrun_forwards_sigterm()
    sys.argv = ["accelerate launch", *sys.argv[1:]]
    runpy.run_module("accelerate.commands.launch", run_name="__main__")


if __name__ == "__main__":
    main()
