"""Errors a user can cause and fix; the CLI prints them as one line instead of a traceback.

The exit codes are the contract with job scripts (docs/faults.md). They live here, with nothing heavy
imported, so that the CLI can answer without importing torch (`dcgan config` in launch/slurm/train.sbatch).
"""

EXIT_USER_ERROR = 2
EXIT_PREEMPTED = 3  # stopped on SIGTERM/SIGUSR1 after saving a checkpoint: requeue with resume=auto
EXIT_NONFINITE = 4  # losses stayed NaN/inf: stopped without saving, the last good checkpoint is kept
EXIT_PEER_LOST = 5  # another rank or machine of the run is gone: resume once every machine is back


class UserError(Exception):
    """A mistake in input (config, paths, data, checkpoints): report `str(self)` and exit non-zero."""


class Stopped(Exception):
    """Training stopped early on purpose (preemption, diverged losses); carries the process exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
