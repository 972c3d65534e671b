"""docker/Dockerfile, checked without a Docker engine (none runs here): what it installs, runs and leaves out.

The last test rebuilds, without Docker, what the image would hold: the build context that .dockerignore lets
through, the wheel built from it, and the files the final stage copies; then it runs the image's ENTRYPOINT
against that wheel instead of the source tree.
"""

import fnmatch
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO, _env

DOCKERFILE = REPO / "docker" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [
        (op.upper(), args.strip()) for op, args in (line.split(None, 1) for line in joined.splitlines() if line.strip())
    ]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, args in _instructions():
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, args))
    return stages


def _copy_pairs(stage: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(source, destination) of each file or folder that a stage copies from the build context."""
    pairs = []
    for op, args in stage:
        if op == "COPY" and "--from=" not in args:
            *sources, destination = [word for word in args.split() if not word.startswith("--")]
            pairs += [(source.rstrip("/"), destination) for source in sources]
    return pairs


def _copies(stage: list[tuple[str, str]]) -> list[str]:
    return [source for source, _ in _copy_pairs(stage)]


def _readme() -> str:
    """pyproject's `readme` (the wheel build reads it)."""
    return re.search(r'^readme = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)[1]


def _ignored(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parents decides."""
    ignored = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_the_base_is_a_cuda_pytorch_runtime_pinned_by_tag_and_digest():
    (base,) = [args.split("=", 1)[1] for op, args in _instructions() if op == "ARG" and args.startswith("BASE=")]
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime@sha256:[0-9a-f]{64}", base)
    assert [args for op, args in _instructions() if op == "FROM"] == ["${BASE} AS wheel", "${BASE}"]


def test_the_image_installs_the_package_wheel_and_its_entrypoint_is_the_packages():
    wheel_stage, final = _stages()
    # The wheel is built from what pyproject needs (its readme too), and installed; no source tree is copied in.
    assert set(_copies(wheel_stage)) == {"pyproject.toml", _readme(), "dcgan"}
    assert any(op == "RUN" and "pip wheel" in args for op, args in wheel_stage)
    install = " ".join(args for op, args in final if op == "RUN")
    assert "pip install" in install and "/wheels/dcgan-*.whl" in install and "from=wheel" in install
    assert "dcgan" not in _copies(final) and not any(op == "ENV" and "PYTHONPATH" in args for op, args in final)
    # ENTRYPOINT: a script in the image that runs accelerate (a dependency of the package) on train.py, which
    # is the `dcgan` script's main; the script comes from the build context, executable.
    (entrypoint,) = [json.loads(args) for op, args in final if op == "ENTRYPOINT"]
    (workdir,) = [args for op, args in final if op == "WORKDIR"]
    script = Path(entrypoint[0]).relative_to(workdir)
    assert len(entrypoint) == 1 and str(script) in _copies(final) and os.access(REPO / script, os.X_OK)
    assert (REPO / script).read_text().rstrip().endswith('exec accelerate launch --multi_gpu train.py "$@"')
    package = importlib.metadata.distribution("dcgan")  # as pyproject.toml declares it
    assert any(re.match(r"accelerate\b", dep) for dep in package.requires)
    scripts = {(e.name, e.value) for e in package.entry_points if e.group == "console_scripts"}
    assert scripts == {("dcgan", "dcgan.commands.cli:main")}
    train = (REPO / "train.py").read_text()
    assert "from dcgan.commands.cli import main" in train and 'main(["train", *sys.argv[1:]])' in train
    assert "train.py" in _copies(final)
    (cmd,) = [json.loads(args) for op, args in final if op == "CMD"]
    assert cmd[0] == "--config" and (REPO / cmd[1]).is_file() and "configs" in _copies(final)


def test_the_image_runs_as_a_user_and_holds_no_secrets():
    final = _stages()[-1]
    (user,) = [args for op, args in final if op == "USER"]
    assert user not in ("root", "0")
    assert [op for op, _ in final].index("USER") < [op for op, _ in final].index("ENTRYPOINT")
    for op, args in _instructions():
        if op in ("ENV", "ARG"):
            assert not re.search(r"KEY|TOKEN|SECRET|PASSWORD|NETRC", args.split("=")[0], re.I), args
    assert "WANDB_API_KEY=" not in DOCKERFILE.read_text()


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies():
    copied = {source for stage in _stages() for source in _copies(stage)}
    for source in copied:
        assert (REPO / source).exists() and not _ignored(source), source
    for private in (".venv/bin/python", "runs/mnist/checkpoints", "data/MNIST/raw", "wandb/run", ".git/config",
                    ".netrc", ".env", "tests/launch/test_docker.py",
                    "dcgan/commands/__pycache__/cli.cpython-311.pyc"):  # fmt: skip
        assert _ignored(private), private


@pytest.fixture(scope="module")
def image():
    """What the image would hold, rebuilt without Docker: the wheel built from the build context (as
    .dockerignore filters it) unpacked as site-packages, and the files the final stage copies. In a folder
    any user may read, so that it can also be run as the image's unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="dcgan-image-"))
    root.chmod(0o755)
    try:
        yield _build_image(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _build_image(root: Path) -> SimpleNamespace:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    context = root / "context"
    for name in (n for n in listed if not _ignored(n) and (REPO / n).is_file()):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, context / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "--wheel-dir", str(root / "wheels"), str(context)], check=True, capture_output=True)
    (wheel,) = (root / "wheels").glob("dcgan-*.whl")
    packaged = {n for n in listed if n.startswith("dcgan/")}
    assert packaged <= set(zipfile.ZipFile(wheel).namelist()), "files of the package missing from its wheel"
    site, app = root / "site", root / "app"
    zipfile.ZipFile(wheel).extractall(site)
    for source, destination in _copy_pairs(_stages()[-1]):  # COPY semantics: into DEST/ if it ends in a slash
        target = app / destination
        if (context / source).is_dir():
            shutil.copytree(context / source, target, dirs_exist_ok=True)
        else:
            target = target / Path(source).name if destination.endswith("/") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / source, target)
    env = {**_env(), "PYTHONPATH": str(site), "HF_HOME": str(root / "hf"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    return SimpleNamespace(root=root, site=site, app=app, env=env)


def _unreachable(as_user: list[str], paths: list[Path]) -> str | None:
    """The first of this interpreter and `paths` that the user `as_user` switches to cannot read, if any."""
    probe = "import os, sys; print(next((p for p in sys.argv[1:] if not os.access(p, os.R_OK | os.X_OK)), ''))"
    proc = subprocess.run([*as_user, sys.executable, "-c", probe, *map(str, paths)], capture_output=True, text=True)
    if proc.returncode != 0:
        return sys.executable
    return proc.stdout.strip() or None


def _final(op: str) -> list[str]:
    """The JSON arguments of one instruction of the final stage (ENTRYPOINT, CMD, VOLUME)."""
    (args,) = [json.loads(args) for name, args in _stages()[-1] if name == op]
    return args


@pytest.mark.slow
def test_the_entrypoint_runs_from_the_wheel_built_out_of_the_docker_context(image):
    where = subprocess.run([sys.executable, "-c", "import dcgan; print(dcgan.__file__)"], cwd=image.app,
                           env=image.env, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert where.startswith(str(image.site))  # dcgan comes from the wheel, not from this checkout
    # The ENTRYPOINT needs a GPU; here it says so in one line. Its CPU alternative (docker/README.md) runs.
    (workdir,) = [args for op, args in _stages()[-1] if op == "WORKDIR"]
    script = image.app / Path(_final("ENTRYPOINT")[0]).relative_to(workdir)
    proc = subprocess.run([str(script)], cwd=image.app, env=image.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no GPU visible" in proc.stderr, proc.stderr
    proc = subprocess.run(["python", "train.py", "--help"], cwd=image.app, env=image.env, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage: dcgan train [-h] [--config CONFIG] [KEY=VALUE ...]" in proc.stdout


@pytest.mark.slow
def test_the_default_command_writes_only_to_the_volumes_as_the_image_user(image, data_root):
    """The image's CMD, as uid 1000 (the image's user) where the test runs as root, else as the current
    user, on an application folder it cannot write: everything lands in the /runs volume and its home."""
    assert _final("VOLUME") == ["/runs", "/data"]
    volume = image.root / "runs"
    home = image.root / "home"
    for folder in (volume, home):
        folder.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        for folder in (volume, home):
            os.chown(folder, 1000, 1000)
        as_user = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--"]
        blocked = _unreachable(as_user, [Path(pytest.__file__).parent, image.site, data_root / "MNIST" / "raw"])
        if blocked:
            pytest.skip(
                f"uid 1000 (the image's user) cannot reach {blocked}: a folder above it is closed to other users "
                "(a mode-0700 `mktemp -d`?); run the suite from a checkout, venv and data root they may enter"
            )
    for path in image.app.rglob("*"):
        path.chmod(path.stat().st_mode & ~0o222)
    before = sorted(str(p) for p in image.app.rglob("*"))
    # /runs and /data are the mounts; the data volume is mounted read-only, as docker/README.md shows.
    command = [a.replace("/runs", str(volume)).replace("=/data", f"={data_root}") for a in _final("CMD")]
    short = ["train.max_steps=2", "train.batch_size=8", "data.limit=64", "eval.every_epochs=0"]
    env = {k: v for k, v in image.env.items() if k not in ("DCGAN_CACHE", "WANDB_DATA_DIR")} | {"HOME": str(home)}
    proc = subprocess.run([*as_user, sys.executable, "train.py", *command, *short], cwd=image.app, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (volume / "mnist" / "generator.safetensors").is_file()
    assert list((volume / "mnist" / "wandb").glob("offline-run-*/run-*.wandb"))  # W&B, the default, offline
    assert sorted(str(p) for p in image.app.rglob("*")) == before
