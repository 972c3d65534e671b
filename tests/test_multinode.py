"""Two "machines" on this one: two `accelerate launch` calls with launch/multi_node.yaml meet and train together."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SMOKE, _env, free_port

pytestmark = pytest.mark.slow


def _machine(rank: int, port: int, out: Path, data_root: Path) -> subprocess.Popen:
    """One machine's launcher, exactly as launch/README.md tells each machine to start."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "launch" / "multi_node.yaml"),
        "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
        str(REPO / "tests" / "dist_probe.py"), str(out), str(SMOKE),
        f"output_dir={out / 'run'}", f"data.root={data_root}", "train.max_steps=3",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_launchers_with_machine_ranks_0_and_1_form_one_group_with_identical_weights(tmp_path, data_root):
    port = free_port()
    machines = [_machine(rank, port, tmp_path, data_root) for rank in (0, 1)]
    outputs = [machine.communicate(timeout=300)[0] for machine in machines]
    for machine, output in zip(machines, outputs, strict=True):
        assert machine.returncode == 0, output[-5000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, report in enumerate(reports):
        assert report["rank"] == rank
        assert report["world_size"] == report["dist_world_size"] == 2
        assert report["distributed_type"] == "DistributedType.MULTI_CPU"
        assert report["steps"] == 3
        assert report["G_max_diff"] == 0.0 and report["D_max_diff"] == 0.0  # bitwise equal to rank 0's
    # Static rendezvous: machine 0 holds global rank 0, the only one that prints.
    assert "on 2 process(es)" in outputs[0] and "on 2 process(es)" not in outputs[1]
    assert (tmp_path / "run" / "generator.safetensors").is_file()
