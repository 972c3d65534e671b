"""The ranks of a multi-process run: agreeing, losing one, and ending.

Agreeing: `on_main` runs work on the main process and hands every rank its result (or its UserError);
`agree` runs work on every rank and raises any rank's UserError on all of them, naming the rank;
`gather_per_rank` collects one object per rank. Nothing here builds the Accelerator (dcgan/runtime.py).

Losing one: gloo reports a peer that died as `Connection reset by peer [10.0.0.2]:41898`, and one that hangs
as a recv timeout: an address, or nothing, never a rank. So each rank writes who it is (its machine, host and
pid) into the rendezvous store when the group forms, and a rank that fails writes its own one-line reason
there before it exits. A rank whose collective then fails calls the roll over the store: the ranks that are
still alive answer within a few seconds, a rank that failed has left its reason, and the rest are named as
lost. The store is held by machine 0's launcher (or rank 0 without one); when it is the store that is gone,
the line says so.

Ending: `end_process`, below, says why a rank leaves with os._exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from dcgan.errors import EXIT_PEER_LOST, Stopped, UserError

T = TypeVar("T")


def on_main(accelerator: Accelerator, fn: Callable[[], T]) -> T:
    """Run `fn` on the main process and hand its result to every rank.

    A UserError raised there is raised on every rank too, so no rank is left waiting at a barrier.
    """
    box: list[Any] = [None]
    if accelerator.is_main_process:
        try:
            box[0] = ("ok", fn())
        except UserError as e:
            box[0] = ("error", str(e))
    broadcast_object_list(box)
    kind, value = box[0]
    if kind == "error":
        raise UserError(value)
    return value


def agree(accelerator: Accelerator, fn: Callable[[], T]) -> T:
    """Run `fn` on every rank; a UserError on any rank is raised on every rank, naming the rank it came from.

    For work whose inputs can differ between machines (their copy of the data): a rank that failed alone
    would leave the others waiting at their next collective."""
    try:
        result, error = fn(), None
    except UserError as e:
        result, error = None, str(e)
    failed = [(rank, line) for rank, line in enumerate(gather_per_rank(accelerator, error)) if line is not None]
    if failed:
        rank, line = failed[0]
        raise UserError(line if accelerator.num_processes == 1 else f"on rank {rank}, {who(rank)}: {line}")
    return result


def gather_per_rank(accelerator: Accelerator, obj: T) -> list[T]:
    """`obj` from every rank, in rank order, on every rank."""
    return list(gather_object([obj])) if accelerator.num_processes > 1 else [obj]


def processes_here(accelerator: Accelerator) -> int:
    """How many ranks run on this machine (a collective): those that share its memory and page cache."""
    hosts = gather_per_rank(accelerator, socket.gethostname())
    return hosts.count(hosts[accelerator.process_index])


# -- losing one --------------------------------------------------------------------------------------------------------

ROLL_CALL_S = 5.0  # how long a rank that lost a peer waits for the others to answer
_WHO, _FAILED, _PRESENT = "dcgan/who/", "dcgan/failed/", "dcgan/present/"
# What gloo, NCCL and the store say when a peer is gone or silent (the errors are plain RuntimeErrors).
_LOST_PEER_TEXT = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Timed out waiting",
    "NCCL communicator was aborted",
    "remote process exited",
)


def _store() -> dist.Store | None:
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return dist.distributed_c10d._get_default_store()


def identity() -> str:
    """This process as the other ranks should name it: its machine (the launcher's node rank), host and pid."""
    return f"machine {os.environ.get('GROUP_RANK', '0')} (host {socket.gethostname()}, pid {os.getpid()})"


def introduce(rank: int) -> None:
    """Write who this rank is into the store, for the lines that may have to name it later."""
    store = _store()
    if store is not None:
        store.set(f"{_WHO}{rank}", identity())


def report(line: str) -> None:
    """Leave this rank's reason for failing in the store, where the ranks it leaves behind look (best effort:
    the store may be what failed)."""
    store = _store()
    if store is None:
        return
    with contextlib.suppress(Exception):
        store.set_timeout(timedelta(seconds=ROLL_CALL_S))
        store.set(f"{_FAILED}{dist.get_rank()}", line)


def is_lost_peer(error: BaseException) -> bool:
    """Whether `error` is a collective or store operation that failed because another process is gone or silent."""
    if isinstance(error, dist.DistError):  # DistBackendError, DistNetworkError, DistStoreError
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in _LOST_PEER_TEXT)


def roll_call(window_s: float = ROLL_CALL_S) -> str:
    """After a collective failed: who is gone, as a phrase ("rank 1, machine 1 (host h, pid p), which ...").

    This rank answers the roll, then waits up to `window_s` for every other rank to answer or to have
    left its reason for failing."""
    store, rank, world = _store(), dist.get_rank(), dist.get_world_size()
    try:
        store.set_timeout(timedelta(seconds=window_s))
        store.set(f"{_PRESENT}{rank}", "1")
        silent, failed = set(range(world)) - {rank}, {}
        deadline = time.monotonic() + window_s
        while silent and time.monotonic() < deadline:
            for other in sorted(silent):
                if store.check([f"{_FAILED}{other}"]):
                    failed[other] = store.get(f"{_FAILED}{other}").decode()
                if other in failed or store.check([f"{_PRESENT}{other}"]):
                    silent.discard(other)
            time.sleep(0.1)
        names = {r: who(r, store) for r in sorted(failed.keys() | silent)}
    except Exception:  # noqa: BLE001 - the store itself is unreachable
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        return f"the rendezvous store at {where} (held by machine 0's launcher, or rank 0) is gone"
    phrases = [f"rank {r}, {names[r]}, failed: {failed[r]}" for r in sorted(failed)]
    silently = "ended without a word (killed, crashed, or its machine is down)"
    phrases += [f"rank {r}, {names[r]}, {silently}" for r in sorted(silent)]
    return "; ".join(phrases) or "a peer closed its connection, but every rank answered the roll call"


def who(rank: int, store: dist.Store | None = None) -> str:
    """How `rank` introduced itself ("machine 1 (host h, pid p)")."""
    store = store or _store()
    key = f"{_WHO}{rank}"
    return store.get(key).decode() if store is not None and store.check([key]) else "machine ?"


@contextlib.contextmanager
def watch(newest_checkpoint: Callable[[], Path | None]) -> Iterator[None]:
    """Turn a collective that failed on a lost peer into `Stopped` with one line naming the peer and the newest
    checkpoint (exit 5); any other failure of this rank is left in the store for the others, and raised as it is."""
    try:
        yield
    except (Stopped, UserError) as e:
        if getattr(e, "exit_code", None) != EXIT_PEER_LOST:
            report(str(e))
        raise
    except Exception as e:
        if _store() is None or not is_lost_peer(e):
            report(f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
            raise
        newest = newest_checkpoint()
        kept = f"the newest checkpoint is {newest}" if newest else "no checkpoint had been saved yet"
        first = str(e).splitlines()[0][:200]
        raise Stopped(
            f"lost {roll_call()} ({first}); {kept}: once every machine is up, run again with resume=auto",
            EXIT_PEER_LOST,
        ) from None


# -- ending ------------------------------------------------------------------------------------------------------------


def end_process(code: int) -> NoReturn:
    """End this rank of a multi-process run with exit `code`, without interpreter shutdown.

    Nothing joins gloo's worker threads before the process ends: a process group that a DDP module was
    built on stays alive, threads and all, after `destroy_process_group()` (and `abort()`, `shutdown()`;
    torch 2.14). A worker frees each finished collective a moment after the main thread was told it finished,
    and the work holds Python objects (the thread-local state it captured): when the main thread has reached
    interpreter shutdown by then, the worker needs the GIL of an interpreter that is going away, CPython ends
    the thread from inside that C++ destructor, and the rank aborts after its work is done ("terminate called
    without an active exception", SIGABRT), which leaves the other machines' launchers waiting for this one's.
    So the rank does what shutdown would have done for it, atexit handlers and flushed output, and leaves
    with os._exit: the threads end with the process. The group is not destroyed first: after the run's last
    barrier nothing is pending, and a collective that somehow still were would make the destroy wait for it."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
