"""Two "machines" on this one: two `accelerate launch` calls with launch/multi_node.yaml meet, train together and
end together; when one machine's rank or launcher is lost, or its data is bad, or it never comes, the other
ends too, non-zero, with one line that names it.

Both launchers are waited on together. One that is still running past the deadline fails the test with both
outputs and the Python stack of every process still alive (py-spy), so a hang explains itself.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import PROBE, REPO, SMOKE, _env, free_port
from dcgan.errors import EXIT_PREEMPTED

pytestmark = pytest.mark.slow
LONG = ("train.epochs=50", "log.every_steps=2", "fault.check_every=4", "checkpoint.every_steps=0")


class Machines:
    """The two launchers of one run, each started exactly as launch/README.md tells a machine to start, with its
    output in a file (machine0.log, machine1.log); `machine1` are overrides for machine 1 only (its own copy of
    the data, say)."""

    def __init__(self, tmp_path: Path, data_root: Path, *overrides: str, machine1: tuple[str, ...] = (), only=(0, 1)):
        self.tmp_path, self.port, self.started = tmp_path, free_port(), time.monotonic()
        self.run_dir = tmp_path / "run"
        common = (f"data.root={data_root}", *overrides)
        self.launchers = {rank: self._start(rank, (*common, *machine1) if rank else common) for rank in only}
        self.exited: dict[int, float] = {}

    def _start(self, rank: int, overrides: tuple[str, ...]) -> subprocess.Popen:
        command = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(REPO / "launch" / "multi_node.yaml"),
            "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
            "--main_process_ip", "127.0.0.1", "--main_process_port", str(self.port), "--rdzv_conf", "timeout=15",
            str(PROBE), str(self.tmp_path), str(SMOKE),
            f"output_dir={self.run_dir}", *overrides,
        ]  # fmt: skip
        log = open(self.tmp_path / f"machine{rank}.log", "w")  # noqa: SIM115 - closed when the launcher ends
        return subprocess.Popen(command, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)

    def output(self, rank: int) -> str:
        return (self.tmp_path / f"machine{rank}.log").read_text()

    def rank_process(self, machine: int) -> psutil.Process:
        """The training process that machine `machine`'s launcher started, once it is there."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            children = psutil.Process(self.launchers[machine].pid).children()
            if children:
                return children[0]
            time.sleep(0.1)
        raise AssertionError(f"machine {machine}'s launcher started no training process")

    def wait_for_training(self) -> None:
        """Until the run has logged its first metrics line (rank 0, on machine 0)."""
        metrics, deadline = self.run_dir / "metrics.jsonl", time.monotonic() + 120
        while not (metrics.is_file() and metrics.read_text()):
            assert all(p.poll() is None for p in self.launchers.values()), self._report("a launcher ended early")
            assert time.monotonic() < deadline, self._report("training did not start")
            time.sleep(0.1)

    def wait(self, timeout: float) -> dict[int, int]:
        """Every launcher's exit code, waiting on all of them together; past `timeout` the test fails with a
        diagnosis instead."""
        deadline = time.monotonic() + timeout
        while len(self.exited) < len(self.launchers):
            for rank, launcher in self.launchers.items():
                if rank not in self.exited and launcher.poll() is not None:
                    self.exited[rank] = time.monotonic()
            if time.monotonic() > deadline:
                report = self._report(f"still running after {timeout:.0f} s")
                for launcher in self.launchers.values():
                    _kill_tree(launcher.pid)
                pytest.fail(report)
            time.sleep(0.05)
        return {rank: launcher.returncode for rank, launcher in self.launchers.items()}

    def _report(self, what: str) -> str:
        parts = [what]
        for rank, launcher in self.launchers.items():
            parts.append(f"===== machine {rank}: launcher exit code {launcher.poll()}\n{self.output(rank)[-6000:]}")
            for process in _tree(launcher.pid):
                parts.append(f"----- still running: pid {process.pid}\n{_python_stack(process.pid)}")
        return "\n".join(parts)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill_tree(pid: int) -> None:
    for process in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def _python_stack(pid: int) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    try:
        return subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(no stack: {e})"


def _stopped_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("dcgan: stopped:", "dcgan: error:"))]


def test_two_launchers_with_machine_ranks_0_and_1_form_one_group_with_identical_weights(tmp_path, data_root):
    machines = Machines(tmp_path, data_root, "train.max_steps=3")
    codes = machines.wait(timeout=300)
    assert codes == {0: 0, 1: 0}, machines._report("a launcher failed")
    # Both launchers end together: neither is left in torch's exit barrier waiting for the other.
    assert abs(machines.exited[0] - machines.exited[1]) < 10, machines.exited
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, report in enumerate(reports):
        assert report["rank"] == rank
        assert report["world_size"] == report["dist_world_size"] == 2
        assert report["distributed_type"] == "DistributedType.MULTI_CPU"
        assert report["steps"] == 3
        assert report["G_max_diff"] == 0.0 and report["D_max_diff"] == 0.0  # bitwise equal to rank 0's
    # Static rendezvous: machine 0 holds global rank 0, the only one that prints.
    outputs = [machines.output(0), machines.output(1)]
    assert "on 2 process(es)" in outputs[0] and "on 2 process(es)" not in outputs[1]
    assert (tmp_path / "run" / "generator.safetensors").is_file()


def test_a_rank_killed_mid_run_ends_the_other_machine_naming_it(tmp_path, data_root):
    machines = Machines(tmp_path, data_root, *LONG)
    machines.wait_for_training()
    victim = machines.rank_process(1)
    victim.kill()
    killed_at = time.monotonic()
    codes = machines.wait(timeout=120)
    assert codes[0] != 0 and codes[1] != 0
    assert machines.exited[0] - killed_at < 30  # the roll call waits 5 s for the lost rank to answer
    (line,) = _stopped_lines(machines.output(0))
    assert line.startswith(f"dcgan: stopped: lost rank 1, machine 1 (host {os.uname().nodename}, pid {victim.pid})")
    assert "ended without a word" in line and "resume=auto" in line


def test_a_machine_whose_launcher_is_killed_stops_the_run_with_a_checkpoint(tmp_path, data_root):
    machines = Machines(tmp_path, data_root, *LONG)
    machines.wait_for_training()
    orphan = machines.rank_process(1)
    machines.launchers[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    codes = machines.wait(timeout=120)
    assert codes[0] != 0 and machines.exited[0] - killed_at < 30
    orphan.wait(timeout=30)  # its launcher's death reached it (SIGTERM), and it saved a checkpoint with rank 0
    (line,) = _stopped_lines(machines.output(0))
    assert line.startswith(f"dcgan: stopped: the launcher of rank 1, machine 1 (host {os.uname().nodename}, ")
    assert "run again with resume=auto" in line
    (saved,) = (tmp_path / "run" / "checkpoints").glob("step_*")
    assert f"checkpoint {saved} saved" in line
    assert f"exitcode  : {EXIT_PREEMPTED}" in machines.output(0)  # rank 0 stopped as on a preemption


def test_bad_data_on_one_machine_ends_both_with_one_line_naming_it(tmp_path, data_root):
    broken = tmp_path / "broken"
    shutil.copytree(data_root / "MNIST", broken / "MNIST")
    images = broken / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100_000])  # truncated on machine 1 only
    machines = Machines(tmp_path, data_root, "train.max_steps=3", machine1=(f"data.root={broken}",))
    codes = machines.wait(timeout=120)
    assert codes[0] != 0 and codes[1] != 0
    (line,) = _stopped_lines(machines.output(0))
    assert line.startswith(f"dcgan: error: on rank 1, machine 1 (host {os.uname().nodename}, pid ")
    assert "train-images-idx3-ubyte" in line and "truncated" in line
    assert not _stopped_lines(machines.output(1))  # the main process alone speaks for the run


def test_a_machine_that_never_arrives_ends_the_other_after_the_rendezvous_timeout(tmp_path, data_root):
    machines = Machines(tmp_path, data_root, "train.max_steps=3", only=(0,))
    codes = machines.wait(timeout=120)
    assert codes[0] != 0
    assert machines.exited[0] - machines.started < 60  # --rdzv_conf timeout=15, as launch/README.md shows
    assert "1/2 clients joined" in machines.output(0)


def test_ranks_that_never_join_end_the_others_after_fault_timeout_s(tmp_path, data_root):
    """Machine 1's launcher comes, but its rank stops before it joins the group (here: a typo in its command line)."""
    machines = Machines(tmp_path, data_root, "train.max_steps=3", "fault.timeout_s=10", machine1=("train.epoch=3",))
    codes = machines.wait(timeout=120)
    assert codes[0] != 0 and codes[1] != 0
    assert machines.exited[0] - machines.started < 60
    (line,) = _stopped_lines(machines.output(0))
    assert line.startswith(f"dcgan: stopped: not every rank joined the group at 127.0.0.1:{machines.port} ")
    assert "within fault.timeout_s=10 s" in line  # then torch's words: which store key it waited for
    assert "unknown config key train.epoch" in machines.output(1)


def test_machines_that_would_train_in_different_precisions_are_refused_in_one_line(tmp_path, data_root):
    """What train.mixed_precision=auto can lead to on machines of two kinds (native bf16 on one only)."""
    emulated = ("train.mixed_precision=bf16", "train.allow_emulated_bf16=true")
    machines = Machines(tmp_path, data_root, "train.max_steps=3", machine1=emulated)
    codes = machines.wait(timeout=120)
    assert codes[0] != 0 and codes[1] != 0
    (line,) = _stopped_lines(machines.output(0))
    assert line == (
        "dcgan: error: the ranks would train in different precisions (rank 0 no, rank 1 bf16): "
        "train.mixed_precision=auto picks by each machine's hardware; set train.mixed_precision to one value "
        "for all of them"
    )
