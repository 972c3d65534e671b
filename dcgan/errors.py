"""Errors a user can cause and fix; the CLI prints them as one line instead of a traceback."""


class UserError(Exception):
    """A mistake in input (config, paths, data, checkpoints): report `str(self)` and exit non-zero."""


class Stopped(Exception):
    """Training stopped early on purpose (preemption, diverged losses); carries the process exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
