"""Errors a user can cause and fix; the CLI prints them as one line instead of a traceback."""


class UserError(Exception):
    """A mistake in input (config, paths, data, checkpoints): report `str(self)` and exit non-zero."""
