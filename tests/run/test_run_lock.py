"""The run-folder lock in-process, against owners made to order: live, dead, zombie, remote, stale."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from dcgan.processes import machine_id, process_start
from dcgan.run.lock import LOCK_FILE, RunLock, RunLocked


def _plant(run_dir, **owner) -> None:
    """A lock file as another trainer would have written it."""
    base = {"host": socket.gethostname(), "machine": machine_id(), "since": "2026-12-01T10:00:00+00:00"}
    (run_dir / LOCK_FILE).write_text(json.dumps({**base, "heartbeat": time.time(), "token": "theirs", **owner}))


def test_a_live_owner_on_this_host_is_refused_by_name(tmp_path, other_process):
    _plant(tmp_path, pid=other_process.pid, pid_started=process_start(other_process.pid))
    with pytest.raises(RunLocked) as refused:
        RunLock(tmp_path, stale_s=60).acquire()
    message = str(refused.value)
    assert f"run folder {tmp_path} is in use by another trainer, pid {other_process.pid} on host " in message
    assert "since 2026-12-01T10:00:00+00:00" in message and "another output_dir" in message
    assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == "theirs"  # the owner is undisturbed


@pytest.mark.parametrize("case", ["exited", "zombie", "pid reused", "own pid"])
def test_a_dead_owner_on_this_host_is_taken_over_with_a_warning(tmp_path, case):
    proc = subprocess.Popen([sys.executable, "-c", "pass"] if case != "pid reused" else ["sleep", "60"])
    if case == "zombie":
        while process_start(proc.pid) != -1:  # exited, not yet reaped
            time.sleep(0.05)
    elif case == "exited":
        proc.wait()
    started = process_start(proc.pid)
    owner = {"pid": proc.pid, "pid_started": started}
    if case == "pid reused":  # the pid runs, but it is not the process that took the lock
        owner["pid_started"] = started - 1
    if case == "own pid":  # left by an earlier process that had our pid (a restarted container)
        owner["pid"] = os.getpid()
    _plant(tmp_path, **owner)
    lock = RunLock(tmp_path, stale_s=60)
    with pytest.warns(UserWarning, match="took over .*run.lock: its owner"):
        lock.acquire()
    proc.kill()
    proc.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == lock.token
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_another_host_is_judged_by_its_heartbeat(tmp_path):
    _plant(tmp_path, host="node-elsewhere", machine="x", pid=1, heartbeat=time.time() - 5)
    with pytest.raises(RunLocked, match=r"pid 1 on host node-elsewhere since .* \(heartbeat 5 s ago\)"):
        RunLock(tmp_path, stale_s=30).acquire()
    _plant(tmp_path, host="node-elsewhere", machine="x", pid=1, heartbeat=time.time() - 31)
    lock = RunLock(tmp_path, stale_s=30)
    with pytest.warns(UserWarning, match="node-elsewhere sent no heartbeat for 31 s"):
        lock.acquire()
    lock.release()


@pytest.mark.parametrize("content", ["{not json", '{"pid": -1, "host": "h", "heartbeat": 0}', '{"pid": "7"}'])
def test_an_unreadable_or_malformed_lock_is_taken_over(tmp_path, content):
    (tmp_path / LOCK_FILE).write_text(content)
    lock = RunLock(tmp_path, stale_s=30)
    with pytest.warns(UserWarning, match="unreadable lock file"):
        lock.acquire()
    lock.release()


def test_heartbeat_release_and_a_lost_lock(tmp_path):
    lock = RunLock(tmp_path, stale_s=2)  # beats every 0.5 s
    lock.acquire()
    first = json.loads((tmp_path / LOCK_FILE).read_text())
    assert (first["pid"], first["host"]) == (os.getpid(), socket.gethostname())
    time.sleep(1.2)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["heartbeat"] > first["heartbeat"]
    assert lock.lost is None
    _plant(tmp_path, host="node-b", machine="y", pid=7)  # judged dead while it was frozen, say
    time.sleep(1.2)
    assert lock.lost is not None and "taken over by pid 7 on host node-b" in lock.lost
    lock.release()  # not ours any more: left in place
    assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == "theirs"


def test_waiting_for_the_owner_to_release(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path), "2"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    said: list[str] = []
    waiter = RunLock(tmp_path, stale_s=60)
    started = time.monotonic()
    waiter.acquire(wait_s=30, say=said.append)
    assert 1.0 < time.monotonic() - started < 15
    assert len(said) == 1 and said[0].startswith("waiting up to 30 s for the trainer that holds")
    assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == waiter.token
    waiter.release()
    assert holder.wait(timeout=30) == 0


# Takes the lock of the folder argv[1] and holds it argv[2] seconds; prints whether it got it.
_HOLDER = """
import sys, time, warnings
from pathlib import Path
from dcgan.run.lock import RunLock, RunLocked
warnings.simplefilter("ignore")
lock = RunLock(Path(sys.argv[1]), stale_s=10)
try:
    lock.acquire()
except RunLocked:
    print("refused", flush=True)
else:
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
"""


def test_concurrent_takeovers_of_a_dead_lock_have_one_winner(tmp_path):
    _plant(tmp_path, host="node-gone", machine="z", pid=3, heartbeat=time.time() - 100)
    contenders = [
        subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path), "3"], stdout=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    outcomes = sorted(proc.communicate(timeout=120)[0].strip() for proc in contenders)
    assert outcomes == ["held"] + ["refused"] * 4
    assert not (tmp_path / LOCK_FILE).exists()  # the winner released it when it ended
