"""Who is in the process group, and who was lost: a dead peer ends every rank with one line that names it.

gloo reports a peer that died as `Connection reset by peer [10.0.0.2]:41898`, and one that hangs as a recv
timeout: an address, or nothing, never a rank. So each rank writes who it is (its machine, host and pid)
into the rendezvous store when the group forms, and a rank that fails writes its own one-line reason there
before it exits. A rank whose collective then fails calls the roll over the store: the ranks that are still
alive answer within a few seconds, a rank that failed has left its reason, and the rest are named as lost.
The store is held by machine 0's launcher (or rank 0 without one); when it is the store that is gone, the
line says so.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from dcgan.errors import EXIT_PEER_LOST, Stopped, UserError

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
def watch(checkpoints: Path) -> Iterator[None]:
    """Turn a collective that failed on a lost peer into `Stopped` with one line naming the peer (exit 5);
    any other failure of this rank is left in the store for the others, and raised as it is."""
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
        from dcgan import checkpoint  # here: the happy path never needs it

        newest = checkpoint.latest_valid(checkpoints)
        kept = f"the newest checkpoint is {newest}" if newest else "no checkpoint had been saved yet"
        first = str(e).splitlines()[0][:200]
        raise Stopped(
            f"lost {roll_call()} ({first}); {kept}: once every machine is up, run again with resume=auto",
            EXIT_PEER_LOST,
        ) from None
