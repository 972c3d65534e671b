"""Which process holds something, and whether it still runs: for the run lock (dcgan/run/lock.py) and the
partial entries of the decoded-image cache (dcgan/data/cache.py).

A process is named by its host, its machine (boot and pid namespace: containers and reboots share host
names), its pid and when that pid started. On the same machine that tells for certain whether it runs; from
another machine it cannot, and the caller falls back on time (a heartbeat, a file's age).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any


def machine_id() -> str:
    """What tells this machine and pid namespace apart from others that share the host name; empty where
    there is no /proc."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None where /proc cannot tell; -1 for a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return -1 if fields[0] == "Z" else int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    """Whether `pid` on this machine runs and is the process that started at `started` (None: any)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = process_start(pid)
    return now != -1 and (started is None or now is None or now == started)


def this_process() -> dict[str, Any]:
    """This process's name: host, machine, pid, pid_started."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "machine": machine_id(), "pid": pid, "pid_started": process_start(pid)}


def on_this_machine(owner: dict[str, Any]) -> bool:
    return owner.get("host") == socket.gethostname() and owner.get("machine") == machine_id()


def ended(owner: dict[str, Any]) -> str | None:
    """Why `owner` (a process of this machine, named as `this_process` names it) no longer runs, or None while
    it does. This process's own pid counts as ended: what holds it now is not what wrote `owner`."""
    if owner["pid"] == os.getpid():
        return f"had this process's pid {owner['pid']} before it (a restarted container?)"
    if not alive(owner["pid"], owner.get("pid_started")):
        return f"pid {owner['pid']} on this host is no longer running"
    return None
