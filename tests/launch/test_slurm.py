"""launch/slurm/train.sbatch, submitted for real to a throwaway two-node SLURM cluster on this machine.

The cluster (tests/helpers/slurm_cluster.py) is started once for the module and stopped at its end; the last check
is that none of its processes is left. Where SLURM cannot run (not root, no apt-get), these tests skip.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SMOKE, _env, read_metrics
from dcgan.run import checkpoint
from helpers import wandb_reader
from helpers.slurm_cluster import LocalSlurm, Unavailable

SCRIPT = "launch/slurm/train.sbatch"
pytestmark = pytest.mark.xdist_group("slurm")  # one worker runs them all: one cluster, one set of ports


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), nodes=2)
    try:
        cluster.start()
    except Unavailable as e:
        cluster.stop()
        pytest.skip(f"cannot run a local SLURM here: {e}")
    yield cluster
    killed = cluster.stop()
    deadline = time.monotonic() + 30  # slurmd's step daemons end shortly after slurmd
    while (left := cluster.leftovers()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not killed and not left, f"still running after the cluster stopped: {killed or left}"


def _job_env(**extra: str) -> dict[str, str]:
    return {**_env(), "DCGAN_PYTHON": sys.executable, **extra}


def _dry_run(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The script's srun command for a fake two-node job, without running it (pass SLURM_CONF for NodeAddr)."""
    fake_job = dict(SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="node-a,node-b", SLURM_JOB_NUM_NODES="2",
                    SLURM_SUBMIT_DIR=str(REPO), SLURM_CPUS_ON_NODE="4", DCGAN_DRY_RUN="1")  # fmt: skip
    return subprocess.run(["bash", SCRIPT, *args], cwd=REPO, env=_job_env(**{**fake_job, **env}),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_the_script_passes_shellcheck(slurm):
    proc = subprocess.run(["shellcheck", SCRIPT], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_dry_run_shows_one_launcher_per_node_and_the_array_task_values(slurm, tmp_path):
    nodes = ",".join(slurm.nodes)
    proc = _dry_run("--config", str(SMOKE), "optim.lr_g={1e-4,2e-4,4e-4}", f"output_dir={tmp_path}/lr_%a", "seed=%a",
                    SLURM_ARRAY_TASK_ID="2", SLURM_JOB_NODELIST=nodes, SLURM_CONF=str(slurm.conf))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    command = proc.stdout
    assert command.startswith("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 bash -c ")
    assert r"--machine_rank\ \"\$SLURM_NODEID\"" in command  # expanded by bash on each node, not here
    for expected in ("--config_file launch/multi_node.yaml", "--num_machines 2", "--num_processes 2",
                     "--main_process_ip 127.0.0.1", "--main_process_port 24242",  # NodeAddr of the first node
                     "--rdzv_conf timeout=600",  # fault.timeout_s: how long the head waits for the other nodes
                     f"train.py --config {SMOKE} optim.lr_g=4e-4 output_dir={tmp_path}/lr_2 seed=2"):  # fmt: skip
        assert expected in command
    assert not tmp_path.joinpath("lr_2").exists()  # a dry run writes nothing


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["train.batchsize=3"], {}, "dcgan: error: unknown config key train.batchsize (did you mean train.batch_"),
        (["optim.lr_g={1e-4,2e-4}"], {}, "picks one value per array task: submit with sbatch --array=0-1"),
        (["optim.lr_g={1e-4,2e-4}"], {"SLURM_ARRAY_TASK_ID": "5"}, "has 2 values, none for array task 5"),
        ([], {"DCGAN_PYTHON": "/usr/bin/false"}, "cannot import dcgan: activate the project's environment"),
        ([], {"SLURM_JOB_ID": ""}, "submit this script with sbatch"),
    ],
)
def test_mistakes_stop_the_script_with_one_line(args, env, message):
    proc = _dry_run(*args, **env)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr


def test_dcgan_config_answers_job_scripts_and_the_exit_code_file_records_the_outcome(tmp_path):
    """What train.sbatch relies on: `dcgan config --get` (no torch import) and DCGAN_EXIT_CODE_FILE."""
    code_file = tmp_path / "exit-code"
    env = {**_env(), "DCGAN_EXIT_CODE_FILE": str(code_file)}
    config = [sys.executable, "-m", "dcgan", "config", "--config", str(SMOKE)]
    proc = subprocess.run(
        [*config, "--get", "output_dir", "output_dir=runs/x"], env=env, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout, code_file.read_text()) == (0, "runs/x\n", "0\n")
    proc = subprocess.run([*config, "--get", "train.nope"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr == "dcgan: error: unknown config key train.nope\n"
    assert code_file.read_text() == "2\n"
    proc = subprocess.run([*config, "--get", "optim.betas"], env={**env, "RANK": "1"}, capture_output=True, text=True)
    assert proc.stdout == "- 0.5\n- 0.999\n" and code_file.read_text() == "2\n"  # only the main process writes it


@pytest.mark.slow
def test_node_launcher_passes_each_stop_signal_on_exactly_once(tmp_path):
    """node_launch.py: a signal before the training process exists reaches it once it does; one that reaches
    launcher and training process together (as SLURM sends it) is not forwarded a second time."""
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import signal, sys, time\n"
        "got = []\n"
        "for s in (signal.SIGUSR1, signal.SIGTERM):\n"
        "    signal.signal(s, lambda n, f: got.append(n))\n"
        "open(sys.argv[1], 'w').write('ready')\n"
        "end = time.monotonic() + 60\n"
        "while not got and time.monotonic() < end:\n"
        "    time.sleep(0.05)\n"
        "time.sleep(1)  # a forwarded copy would arrive in this second\n"
        "open(sys.argv[1], 'w').write(repr(got))\n"
    )  # fmt: skip
    for case, sig in (("early", signal.SIGUSR1), ("together", signal.SIGTERM)):
        out = tmp_path / case
        launcher = subprocess.Popen(
            [sys.executable, "launch/slurm/node_launch.py", "--config_file", "launch/multi_node.yaml",
             "--num_machines", "1", "--num_processes", "1", "--main_process_port", "0", str(worker), str(out)],
            cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        if case == "early":
            while not _catches(launcher.pid, sig):  # its handler is in place; it is still importing accelerate
                time.sleep(0.01)
            launcher.send_signal(sig)
        else:
            while not out.exists():
                assert launcher.poll() is None, launcher.communicate()[0]
                time.sleep(0.05)
            children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout
            for pid in [launcher.pid, *map(int, children.split())]:
                os.kill(pid, sig)
        output, _ = launcher.communicate(timeout=120)
        if case == "early" and "Signal 10 (SIGUSR1)" in output:
            continue  # it reached the worker before its handler was in place (a slow start): delivered all the same
        assert launcher.returncode == 0, output[-3000:]  # alive through the signal, and its worker ended cleanly
        assert out.read_text() == repr([sig.value]), case


def _catches(pid: int, sig: signal.Signals) -> bool:
    caught = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigCgt"))
    return bool(int(caught.split()[1], 16) >> (sig - 1) & 1)


def _wait_for_training(slurm: LocalSlurm, job: str, run: Path) -> None:
    """Until the job's run has logged its first metrics line."""
    deadline = time.monotonic() + 240
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        assert slurm.job(job)["JobState"] in ("PENDING", "RUNNING"), slurm.job(job)
        assert time.monotonic() < deadline, "the job did not start training"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_two_node_job_is_preempted_requeues_itself_and_finishes_with_nothing_lost(slurm, tmp_path, data_root):
    run = tmp_path / "run"
    job = slurm.client(
        "sbatch", "--parsable", "--nodes=2", f"--output={tmp_path}/slurm-%j.out", SCRIPT,
        "--config", str(SMOKE), f"output_dir={run}", f"data.root={data_root}", "train.epochs=4",
        "log.every_steps=4", "fault.check_every=4", "checkpoint.every_steps=0", "log.tracker=wandb",
        env=_job_env(), cwd=REPO,
    ).strip()  # fmt: skip
    _wait_for_training(slurm, job, run)
    # Preempt it as a time limit would (the script gets SIGUSR1), once it is training.
    slurm.client("scancel", "--batch", "--signal=USR1", job)
    info = slurm.wait_job(job, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout=300)
    log = (run / "slurm" / f"job-{job}.log").read_text()
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), log[-5000:]

    # Stopped with a checkpoint, requeued by the script, resumed from exactly that checkpoint.
    stopped = re.search(r"dcgan: stopped: SIGUSR1 received: checkpoint (\S+) saved at step (\d+)", log)
    assert stopped, log[-5000:]
    step = int(stopped[2])
    assert 0 < step < 64 and step % 4 == 0
    assert log.count("2 node(s) x 1 process(es)") == 2 and log.count("on 2 process(es)") == 2
    assert f"checkpoint saved; requeueing job {job}" in log
    assert f"resumed from {stopped[1]} at step {step}" in log and log.rstrip().endswith("training finished")
    assert (tmp_path / f"slurm-{job}.out").read_text().count(f"log in {run}/slurm/job-{job}.log") == 2

    # Nothing lost, nothing repeated: every logged step once, in order; the run ends at its last step.
    assert [m["step"] for m in read_metrics(run)] == list(range(4, 65, 4))
    assert (run / "generator.safetensors").is_file()
    assert checkpoint.latest_valid(run / "checkpoints").name == checkpoint.checkpoint_name(64)

    # The requeued job logged to the same W&B run, continuing where the first part stopped.
    run_id = (run / "wandb_run_id").read_text().strip()
    first, second = sorted(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert wandb_reader.run_id(first) == wandb_reader.run_id(second) == run_id
    steps = [[r["_step"] for r in wandb_reader.history(f) if "loss_D" in r] for f in (first, second)]
    assert steps[0] + steps[1] == list(range(4, 65, 4)) and steps[0][-1] == step


@pytest.mark.slow
def test_a_requeued_job_starts_once_the_old_one_has_ended(slurm, tmp_path, data_root):
    """`scontrol requeue` of a running job: SLURM ends it (SIGTERM: the trainer saves and lets go of the run
    folder) and only then starts it again, which resumes from that checkpoint; no part of it is refused."""
    run = tmp_path / "run"
    job = slurm.client(
        "sbatch", "--parsable", f"--output={tmp_path}/slurm-%j.out", SCRIPT, "--config", str(SMOKE),
        f"output_dir={run}", f"data.root={data_root}", "train.epochs=4", "log.every_steps=4",
        "fault.check_every=4", "checkpoint.every_steps=0", "log.tracker=none", env=_job_env(), cwd=REPO,
    ).strip()  # fmt: skip
    _wait_for_training(slurm, job, run)
    slurm.client("scontrol", "requeue", job)
    info = slurm.wait_job(job, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout=300)
    log = (run / "slurm" / f"job-{job}.log").read_text()
    assert (info["JobState"], info["Restarts"]) == ("COMPLETED", "1"), log[-5000:]
    stopped = re.search(r"dcgan: stopped: SIGTERM received: checkpoint (\S+) saved at step (\d+)", log)
    assert stopped, log[-5000:]
    second = log.index("restart 1:")  # the requeued part starts after the first one's last words
    assert stopped.start() < second and f"resumed from {stopped[1]} at step {stopped[2]}" in log[second:]
    assert "is in use by another trainer" not in log and "took over" not in log
    assert [m["step"] for m in read_metrics(run)] == list(range(4, 129, 4))  # 1 process: 32 steps per epoch
    starts = [json.loads(line) for line in (run / "run_history.jsonl").read_text().splitlines()]
    assert [s["step"] for s in starts] == [0, int(stopped[2])]
    assert starts[1]["changes"]["fault.lock_wait_s"] == [0, 300]  # what train.sbatch adds to requeued jobs
    assert not (run / "run.lock").exists()
