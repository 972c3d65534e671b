"""Run `python SCRIPT ARGS` or `python -m MODULE ARGS` as a fresh process forked from a server that has already
imported torch and the package.

Most tests train or sample through the real entry points, each in a process of its own, and most of such a
short run was Python importing torch, Accelerate, torch._dynamo (the first optimizer imports it) and matplotlib
again: about 10 s of a 12-s smoke run on a busy 2-core machine, 1.7 s once they are imported. A
`multiprocessing` fork server imports them once per pytest worker and runs no tensor op (importing torch starts
one native thread of its own, as in any process that DataLoader forks workers from), then forks a child per
command: the child has its own pid, environment, working folder, stdout/stderr and exit
code, runs the entry point as `__main__` and its atexit handlers at the end. Only the import is not re-run;
`test_entry_points`, the ranks of multi-process launches (their `accelerate launch` launcher is forked) and
SLURM jobs still start Python for real.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import sys

PRELOAD = ["dcgan.cli", "dcgan.trainer", "dcgan.eval_cli", "torch._dynamo", "matplotlib.pyplot", "forked"]


def _child(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked child: become `python ARGV...` started in `cwd` with `env`, writing to `out` and `err`."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout.reconfigure(line_buffering=True)
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
    finally:
        atexit._run_exitfuncs()  # multiprocessing ends its children with os._exit, which skips them
        sys.stdout.flush()
        sys.stderr.flush()


_context: multiprocessing.context.ForkServerContext | None = None


def run(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str, timeout: float) -> int | None:
    """Run `python ARGV...` (a script path or `-m MODULE` first) in a forked child and return its exit code,
    or None if it ran past `timeout` (then it is killed)."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    child = _context.Process(target=_child, args=(argv, cwd, env, out, err))
    child.start()
    child.join(timeout)
    if child.exitcode is None:
        child.kill()
        child.join()
        return None
    return child.exitcode
