"""One trainer per run folder: a lock file that names its owner and is kept fresh by a heartbeat.

`RUN/run.lock` holds the owner as JSON: host, machine, pid, when it started, a heartbeat time and a
random token. It appears atomically (written under a private name, then hard-linked to `run.lock`,
which fails when the file exists, on local and network file systems alike). A trainer that finds it
judges the owner:
- on the same machine (same host name, boot and pid namespace) by its process: alive while that pid
  runs and is the process that took the lock (start times agree; a zombie is dead);
- from another machine by its heartbeat, rewritten every few seconds: alive while it is younger than
  `fault.lock_stale_s`, so a crashed node does not lock its run for ever.
A live owner is waited for up to `fault.lock_wait_s`, then refused (`RunLocked`, one line naming it).
A dead owner's lock is taken over with a warning; concurrent take-overs are serialised by a directory
(mkdir is atomic everywhere), so exactly one trainer wins.

Only the main process of a launch takes the lock. If the heartbeat finds another token in the file
(the owner was judged dead while it was only frozen), `lost` says who took over, and the trainer stops
without writing anything more.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from dcgan.errors import UserError
from dcgan.processes import ended, on_this_machine, this_process

LOCK_FILE = "run.lock"
_TAKEOVER_TIMEOUT_S = 30  # a take-over directory older than this was left by a killed trainer


class RunLocked(UserError):
    """The run folder belongs to a live trainer."""


def claim(run_dir: Path, stale_s: float, wait_s: float = 0) -> RunLock:
    """Make `run_dir` if needed, check that it is writable, and take its lock (a UserError otherwise)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output_dir {run_dir} is not writable ({e.strerror})") from None
    lock = RunLock(run_dir, stale_s)
    lock.acquire(wait_s)
    return lock


def describe(owner: dict[str, Any]) -> str:
    since = owner.get("since", "?")
    age = time.time() - float(owner.get("heartbeat", 0))
    return f"pid {owner.get('pid')} on host {owner.get('host')} since {since} (heartbeat {max(age, 0):.0f} s ago)"


class RunLock:
    def __init__(self, run_dir: Path, stale_s: float):
        self.path = run_dir / LOCK_FILE
        self.stale_s = stale_s
        self.token = secrets.token_hex(8)
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner = {
            **this_process(),
            "since": datetime.now().astimezone().isoformat(timespec="seconds"),
            "token": self.token,
        }

    # -- taking it ---------------------------------------------------------------------------------

    def acquire(self, wait_s: float = 0, say=print) -> None:
        """Own the run folder, or raise RunLocked naming the live owner once `wait_s` has passed."""
        deadline, waiting = time.monotonic() + wait_s, False
        while True:
            if self._create():
                break
            try:
                owner = self._read()
            except FileNotFoundError:  # released just now: try again
                continue
            verdict = self.judge(owner)
            if verdict is not None:
                if self._take_over(owner):
                    warnings.warn(f"took over {self.path}: its owner {verdict}", stacklevel=2)
                    break
                continue  # someone else changed the lock meanwhile: judge again
            if time.monotonic() >= deadline:
                raise RunLocked(
                    f"run folder {self.path.parent} is in use by another trainer, {describe(owner)}; "
                    "wait for it to end, stop it, or train into another output_dir"
                )
            if not waiting:
                say(f"waiting up to {wait_s:.0f} s for the trainer that holds {self.path}: {describe(owner)}")
                waiting = True
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.01)))
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()
        atexit.register(self.release)

    def judge(self, owner: dict[str, Any] | None) -> str | None:
        """None if `owner` (a lock's content) is a live trainer, else why it is not."""
        if owner is None:
            return "left an unreadable lock file"
        if on_this_machine(owner):
            return ended(owner)
        age = time.time() - owner["heartbeat"]
        if age > self.stale_s:
            return f"pid {owner['pid']} on host {owner['host']} sent no heartbeat for {age:.0f} s"
        return None

    def _content(self) -> str:
        return json.dumps({**self._owner, "heartbeat": time.time()})

    def _write_private(self) -> Path:
        tmp = self.path.with_name(f".{LOCK_FILE}.{self.token}")
        tmp.write_text(self._content())
        return tmp

    def _create(self) -> bool:
        tmp = self._write_private()
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _read(self) -> dict[str, Any] | None:
        """The lock's owner; None if the file cannot be read as one. FileNotFoundError if there is none."""
        try:
            owner = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise
        except (OSError, ValueError):
            return None
        well_formed = (
            isinstance(owner, dict)
            and isinstance(owner.get("pid"), int)
            and owner["pid"] > 0
            and isinstance(owner.get("host"), str)
            and isinstance(owner.get("heartbeat"), (int, float))
        )
        return owner if well_formed else None

    def _take_over(self, stale: dict[str, Any] | None) -> bool:
        """Replace the lock judged dead with ours, unless another trainer changed it first."""
        mutex = self.path.with_name(f"{LOCK_FILE}.takeover")
        try:
            mutex.mkdir()
        except FileExistsError:
            try:
                if time.time() - mutex.stat().st_mtime > _TAKEOVER_TIMEOUT_S:
                    mutex.rmdir()
            except OSError:
                pass  # removed by its owner, or by another trainer, meanwhile
            time.sleep(0.1)
            return False
        try:
            if self._read() != stale:
                return False
            os.replace(self._write_private(), self.path)
            return True
        except FileNotFoundError:
            return False
        finally:
            mutex.rmdir()

    # -- keeping it --------------------------------------------------------------------------------

    def _beat(self) -> None:
        interval = min(10.0, self.stale_s / 4)
        while not self._stop.wait(interval):
            try:
                owner = self._read()
            except FileNotFoundError:  # removed by hand: ours again unless another trainer was quicker
                if self._create():
                    continue
                owner = self._read_or_none()
            if owner is None or owner.get("token") != self.token:
                self.lost = f"taken over by {describe(owner)}" if owner else f"{self.path} became unreadable"
                return
            try:
                os.replace(self._write_private(), self.path)
            except OSError as e:  # a full or flaky disk: the next beat tries again
                warnings.warn(f"cannot refresh {self.path} ({e})", stacklevel=1)

    def _read_or_none(self) -> dict[str, Any] | None:
        try:
            return self._read()
        except FileNotFoundError:
            return None

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if (self._read_or_none() or {}).get("token") == self.token:
                self.path.unlink(missing_ok=True)
        atexit.unregister(self.release)
