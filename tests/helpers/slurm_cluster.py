"""A throwaway SLURM cluster on this machine, for tests: munged, slurmctld and one slurmd per node, as root.

Debian's slurm-wlm (22.05) and munge packages, installed by tests/helpers/install_slurm.sh (which .ci/run runs first);
where they are missing the tests skip, saying so. Everything lives
under one folder: its own munge key and socket, slurm.conf, state, spool, logs and free ports, so it neither
touches nor needs an existing SLURM. Node 0 is the machine's short hostname; further nodes are extra
`slurmd -N NAME` daemons on 127.0.0.1 (Debian builds SLURM with multiple-slurmd support), so a two-node job
really runs one launcher per "node" with SLURM_NODEID 0 and 1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

# Debian package -> a file it installs; shellcheck lints launch/slurm/train.sbatch.
PACKAGES = {
    "slurmctld": "/usr/sbin/slurmctld",
    "slurmd": "/usr/sbin/slurmd",
    "slurm-client": "/usr/bin/sbatch",
    "munge": "/usr/sbin/munged",
    "shellcheck": "/usr/bin/shellcheck",
}


class Unavailable(Exception):
    """The cluster cannot run here; the message says why (tests skip with it)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_installed() -> None:
    """Unavailable, naming what to run, where a package is missing (tests never install anything themselves)."""
    missing = [name for name, path in PACKAGES.items() if not Path(path).exists()]
    if missing:
        raise Unavailable(
            f"{', '.join(missing)} not installed: run tests/helpers/install_slurm.sh as root (CONTRIBUTING.md)"
        )


class LocalSlurm:
    def __init__(self, root: Path, nodes: int = 2, cpus_per_node: int = 1):
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.nodes = [self.host] + [f"{self.host}-node{i}" for i in range(1, nodes)]
        self.cpus_per_node = cpus_per_node
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self._procs: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        """Environment for client commands (sbatch, squeue, scontrol) talking to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- start and stop ----------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        ensure_installed()
        if os.geteuid() != 0:
            raise Unavailable("a local SLURM runs its daemons as root; these tests run as another user")
        for folder in ("munge", "state", "spool", "log"):
            (self.root / folder).mkdir(parents=True, mode=0o700, exist_ok=True)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._daemon(
            "/usr/sbin/munged", "--foreground", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
            f"--pid-file={self.root / 'munge' / 'munged.pid'}", f"--seed-file={self.root / 'munge' / 'seed'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
        )  # fmt: skip
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged did not create its socket")
        self._write_conf()
        self._daemon("/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf))
        for node in self.nodes:
            self._daemon("/usr/sbin/slurmd", "-D", "-N", node, "-f", str(self.conf))
        self._wait(self._all_idle, timeout, "the nodes did not become idle")

    def _write_conf(self) -> None:
        r, ports = self.root, [_free_port() for _ in range(len(self.nodes) + 1)]
        lines = [
            "ClusterName=dcgantest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={ports[0]}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
            f"AuthInfo=socket={self.munge_socket},cred_expire=5",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}/%n",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'spool'}/slurmd-%n.pid",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log'}/slurmd-%n.log",
            # linuxproc signals every process of a step (like proctrack/cgroup on real clusters), with no
            # cgroup setup inside a container.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/builtin",
            "SchedulerParameters=sched_interval=1",
            "ReturnToService=2",
            "KillWait=10",
            "MinJobAge=600",
            "InactiveLimit=0",
            f"PlugStackConfig={r / 'plugstack.conf'}",
            "MailProg=/bin/true",
        ]
        for node, port in zip(self.nodes, ports[1:], strict=True):
            lines.append(
                f"NodeName={node} NodeHostname={self.host} NodeAddr=127.0.0.1 Port={port} "
                f"CPUs={self.cpus_per_node} State=UNKNOWN"
            )
        lines.append(f"PartitionName=test Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")
        (r / "plugstack.conf").write_text("")

    def _daemon(self, *command: str) -> None:
        log = (self.root / "log" / f"{Path(command[0]).name}.out").open("a")
        self._procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env))
        log.close()

    def _all_idle(self) -> bool:
        for proc in self._procs:
            if proc.poll() is not None:
                raise Unavailable(f"{proc.args[0]} exited {proc.returncode} on start; logs in {self.root / 'log'}")
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True)
        states = proc.stdout.split()
        return proc.returncode == 0 and len(states) == len(self.nodes) and all(s == "idle" for s in states)

    @staticmethod
    def _wait(ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise Unavailable(what)
            time.sleep(0.2)

    def stop(self) -> list[str]:
        """Stop every daemon this cluster started (slurmd first); returns those that had to be killed."""
        killed = []
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed.append(proc.args[0])
        return killed

    def leftovers(self) -> list[str]:
        """Processes of this cluster still alive: daemons, step daemons and job processes all carry its SLURM_CONF."""
        mark = f"SLURM_CONF={self.conf}\0".encode()
        found = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                if mark in environ.read_bytes() and int(environ.parent.name) != os.getpid():
                    found.append((environ.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
            except (OSError, ValueError):
                continue  # gone while we looked, or not ours to read
        return found

    # -- jobs --------------------------------------------------------------------------------------

    def client(self, *command: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
        """Run a client command against this cluster; its stdout (a failure fails the test)."""
        proc = subprocess.run(command, env={**self.env, **(env or {})}, cwd=cwd, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, ExitCode, Restarts, ...)."""
        out = self.client("scontrol", "-o", "show", "job", job_id)
        return dict(field.split("=", 1) for field in out.split() if "=" in field)

    def wait_job(self, job_id: str, states: tuple[str, ...], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (info := self.job(job_id))["JobState"] not in states:
            assert time.monotonic() < deadline, f"job {job_id} still {info['JobState']} after {timeout} s: {info}"
            time.sleep(0.3)
        return info
