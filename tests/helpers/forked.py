"""Run `python SCRIPT ARGS` or `python -m MODULE ARGS` as a fresh process forked from a server that has already
imported torch and the package.

Most tests train or sample through the real entry points, each in a process of its own, and most of such a
short run was Python importing torch, Accelerate, torch._dynamo (the first optimizer imports it) and matplotlib
again: about 10 s of a 12-s smoke run on a busy 2-core machine, 1.7 s once they are imported. A
`multiprocessing` fork server imports them once per pytest worker and runs no tensor op (importing torch starts
one native thread of its own, as in any process that DataLoader forks workers from), then forks a child per
command: the child has its own pid, environment, working folder, stdout/stderr and exit
code, runs the entry point as `__main__` and its atexit handlers at the end. Only the import is not re-run.
`run_ranks` forks the N ranks of a multi-process run the same way, in the environment torchrun gives them;
they rendezvous and all-reduce over gloo as launched ranks do. `test_entry_points`, the ranks that tests
start through `accelerate launch` (its launcher is forked) and SLURM jobs still start Python for real.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.connection
import os
import runpy
import sys
import time

PRELOAD = [
    "dcgan.commands.cli",
    "dcgan.train.loop",
    "dcgan.eval.offline",
    "torch._dynamo",
    "matplotlib.pyplot",
    "helpers.forked",
]


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


def _server() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def run(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str, timeout: float) -> int | None:
    """Run `python ARGV...` (a script path or `-m MODULE` first) in a forked child and return its exit code,
    or None if it ran past `timeout` (then it is killed)."""
    child = _server().Process(target=_child, args=(argv, cwd, env, out, err))
    child.start()
    child.join(timeout)
    if child.exitcode is None:
        child.kill()
        child.join()
        return None
    return child.exitcode


RANK_GRACE_S = 20  # after one rank fails, how long the others get to stop on their own (torchrun: none)


def run_ranks(
    argv: list[str], nproc: int, port: int, cwd: str, env: dict[str, str], out: str, err: str, timeout: float
) -> int | None:
    """Run `nproc` ranks of `python ARGV...` on this host, as `torchrun --nproc_per_node N` would start them
    (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each environment), each a
    child forked from the server: separate processes that rendezvous and all-reduce over gloo for real;
    only the launcher and the ranks' imports are saved. Their stdout and stderr go to `out` and `err`, rank
    by rank. Returns 0 when every rank exited 0, else rank 0's non-zero code or the first other one (a real
    launcher says 1 whatever the ranks said); None past `timeout`. As a launcher does, the other ranks are
    killed once one has failed, here after RANK_GRACE_S."""
    ranks = []
    for rank in range(nproc):
        rank_env = {
            **env, "RANK": str(rank), "LOCAL_RANK": str(rank), "GROUP_RANK": "0", "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
        }  # fmt: skip
        child = _server().Process(target=_child, args=(argv, cwd, rank_env, f"{out}.{rank}", f"{err}.{rank}"))
        child.start()
        ranks.append(child)
    deadline, failed_at = time.monotonic() + timeout, None
    while any(child.exitcode is None for child in ranks):
        now = time.monotonic()
        if failed_at is None and any(child.exitcode for child in ranks):
            failed_at = now
        if now > deadline or (failed_at is not None and now > failed_at + RANK_GRACE_S):
            break
        multiprocessing.connection.wait([c.sentinel for c in ranks if c.exitcode is None], timeout=0.5)
    timed_out = any(child.exitcode is None for child in ranks) and failed_at is None
    for child in ranks:
        if child.exitcode is None:
            child.kill()
        child.join()
    for path, parts in ((out, [f"{out}.{r}" for r in range(nproc)]), (err, [f"{err}.{r}" for r in range(nproc)])):
        with open(path, "w") as joined:
            for part in parts:
                with open(part) as f:
                    joined.write(f.read())
    if timed_out:
        return None
    codes = [child.exitcode for child in ranks]
    return codes[0] if codes[0] else next((code for code in codes if code), 0)
