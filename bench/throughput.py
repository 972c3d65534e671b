"""Images per second of the framework's training step against the tutorial's loop, side by side.

    python bench/throughput.py --device cpu --batch 64 --precision no --json out.json
    python bench/throughput.py --matrix --json out.json   # framework only: 28 and 64 px x fp32, bf16, auto

Both run in this one process, same model, batch and precision, after a warm-up, in alternating timed
windows (so a noisy machine slows both alike). The framework side is `Trainer.advance()`, the exact
iteration `train.py` runs (batch from the on-device split, D step, G step, metrics kept on the device);
the reference is bench/tutorial_loop.py. A benchmark, not a test: tests/bench/test_bench.py only checks
that it runs and that both sides compute the same losses.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: the reference lives beside it

from tutorial_loop import TutorialLoop  # noqa: E402

from dcgan import hardware  # noqa: E402
from dcgan.config import load_config  # noqa: E402
from dcgan.data import to_model_range  # noqa: E402
from dcgan.errors import UserError  # noqa: E402
from dcgan.runtime import bare_model  # noqa: E402
from dcgan.train.loop import Trainer  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=64, help="per-process batch size, both sides")
    parser.add_argument("--precision", choices=("no", "bf16", "fp16", "auto"), default="no")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both sides (torch.set_num_threads)")
    parser.add_argument("--data-root", default=os.environ.get("DCGAN_DATA", "data"), help="holds MNIST/raw/")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per side, alternating")
    parser.add_argument("--steps", type=int, default=20, help="iterations per timed window")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations per side first")
    parser.add_argument("--compile", action="store_true", help="framework side with train.compile=true")
    parser.add_argument("--only", choices=("framework", "reference"), help="time one side alone")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="framework config override")
    parser.add_argument("--reference-precision", choices=("no", "bf16", "fp16"), help="default: --precision")
    parser.add_argument("--check", action="store_true", help="no timing: both sides' losses on one fixed batch")
    parser.add_argument(
        "--matrix", action="store_true", help="framework only: the 28 px and 64 px models in fp32, bf16 and auto"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--profile", type=Path, help="after timing, profile 10 framework steps: op tables here")
    return parser.parse_args(argv)


def hardware_record(device: torch.device) -> dict[str, object]:
    """What ran the benchmark, so a number is never quoted without its machine."""
    info = hardware.describe(device)
    # Whether bf16 on this CPU is native (AVX512-BF16, AMX) or emulated by oneDNN in fp32 (slower).
    info["cpu_bf16_flags"] = sorted(set(info["cpu_flags"]) & hardware.BF16_FLAGS)
    info.update(python=platform.python_version(), torch=torch.__version__, date=datetime.date.today().isoformat())
    for name in ("torchvision", "accelerate"):
        info[name] = __import__(name).__version__
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
    return info


def framework_trainer(args: argparse.Namespace, run_dir: str) -> Trainer:
    overrides = [
        f"output_dir={run_dir}",
        f"data.root={args.data_root}",
        f"train.batch_size={args.batch}",
        f"train.mixed_precision={args.precision}",
        f"train.cpu={str(args.device == 'cpu').lower()}",
        f"train.compile={str(args.compile).lower()}",
        "train.allow_emulated_bf16=true",  # measuring it is the point; hardware_record says whether it is
        "resume=never",
        "log.tracker=none",
        # The reference loop's order and targets (D first, real label 1.0), no R1 (the default's lazy R1
        # adds ~3% per step on a CPU, docs/results.md) and its fixed rates at any batch: the same math for --check.
        "train.g_first=false",
        "train.real_label=1.0",
        "train.r1_gamma=0",
        "optim.lr_scaling=none",
        *args.set,
    ]
    return Trainer(load_config(None, overrides))


def _memory_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (the process's peak) from /proc, in MB; NaN where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024
    except (OSError, StopIteration):
        return float("nan")


class Side:
    """One contender: a step function and what its timed windows measured."""

    def __init__(self, name: str, step, device: torch.device, batch: int):
        self.name, self.step, self.device, self.batch = name, step, device, batch
        self.rates: list[float] = []
        self.rss_mb = 0.0
        self.gpu_peak_gb = 0.0
        self.warmup_s = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warm_up(self, steps: int) -> None:
        started = time.perf_counter()
        for _ in range(steps):
            self.step()
        self._sync()
        self.warmup_s = time.perf_counter() - started

    def window(self, steps: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._sync()
        started = time.perf_counter()
        for _ in range(steps):
            self.step()
        self._sync()
        self.rates.append(steps * self.batch / (time.perf_counter() - started))
        self.rss_mb = max(self.rss_mb, _memory_mb("VmRSS"))
        if self.device.type == "cuda":
            self.gpu_peak_gb = max(self.gpu_peak_gb, torch.cuda.max_memory_allocated(self.device) / 2**30)

    def summary(self) -> dict[str, object]:
        median = statistics.median(self.rates)
        out = {
            "images_per_s": round(median, 1),
            "min": round(min(self.rates), 1),
            "max": round(max(self.rates), 1),
            "spread_pct": round(100 * (max(self.rates) - min(self.rates)) / median, 1),
            "windows": [round(r, 1) for r in self.rates],
            "warmup_s": round(self.warmup_s, 2),
            "rss_MB": round(self.rss_mb),
        }
        if self.device.type == "cuda":
            out["gpu_peak_GB"] = round(self.gpu_peak_gb, 3)
        return out


def run(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    result: dict[str, object] = {
        "setting": {
            "device": args.device, "batch": args.batch, "precision": args.precision, "threads": args.threads,
            "reference_precision": args.reference_precision or args.precision, "compile": args.compile,
            "overrides": args.set, "windows": args.windows, "steps": args.steps,
        },
        "hardware": hardware_record(device),
    }  # fmt: skip
    sides = []
    with tempfile.TemporaryDirectory() as run_dir, contextlib.ExitStack() as held:
        resolved = args.precision
        if args.only != "reference":
            trainer = framework_trainer(args, run_dir)
            held.callback(trainer.session.release)  # its run lock's heartbeat stops before the folder goes
            resolved = result["setting"]["resolved_precision"] = trainer.cfg.train.mixed_precision
            sides.append(Side("framework", trainer.advance, device, args.batch))
        if args.only != "framework":
            reference = TutorialLoop(args.data_root, args.batch, args.reference_precision or resolved, device)
            sides.append(Side("reference", reference.step, device, args.batch))
        for side in sides:
            side.warm_up(args.warmup)
        if device.type == "cuda" and args.only != "reference":
            result["framework_host_syncs_per_10_steps"] = count_host_syncs(trainer.advance, 10)
        for _ in range(args.windows):
            for side in sides:
                side.window(args.steps)
        if args.profile and args.only != "reference":
            try:  # a diagnostic after the timing: its failure is reported, the timing kept
                result["framework_profile"] = profile_steps(trainer.advance, device, 10, args.profile)
            except Exception as e:
                result["framework_profile"] = {"error": f"{type(e).__name__}: {e}"}
    for side in sides:
        result[side.name] = side.summary()
    if len(sides) == 2:
        result["ratio"] = round(sides[0].summary()["images_per_s"] / sides[1].summary()["images_per_s"], 3)
    result["peak_rss_MB"] = round(_memory_mb("VmHWM"))
    return result


def count_host_syncs(step, steps: int) -> int:
    """How many times `steps` calls of `step` made the host wait for the GPU (CUDA's sync debug mode)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def profile_steps(step, device: torch.device, steps: int, path: Path) -> dict[str, float]:
    """Where an iteration's time goes: torch.profiler over `steps` calls of `step`, op tables written to `path`.

    Returns per-step figures: host wall time (profiler overhead included), aten calls and, on a GPU,
    device events (kernels, copies) and their summed time, whose ratio to the wall time says whether
    the step is bound by the host (launches, Python) or by the GPU's arithmetic.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    if cuda:
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize(device)
        wall_ms = (time.perf_counter() - started) * 1e3 / steps
    averages = prof.key_averages()
    summary = {
        "wall_ms_per_step": round(wall_ms, 3),
        "aten_calls_per_step": sum(e.count for e in averages if e.key.startswith("aten::")) / steps,
    }
    tables = [f"{steps} steps profiled, {wall_ms:.3f} ms per step (profiler overhead included)", ""]
    tables.append(averages.table(sort_by="self_cpu_time_total", row_limit=30))
    if cuda:
        on_device = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        device_ms = sum(e.device_time_total for e in on_device) / 1e3 / steps
        summary.update(
            device_events_per_step=len(on_device) / steps,
            device_ms_per_step=round(device_ms, 3),
            device_busy_pct=round(100 * device_ms / wall_ms, 1),
        )
        tables.append(averages.table(sort_by="self_device_time_total", row_limit=30))
    tables.insert(1, json.dumps(summary))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tables) + "\n")
    return summary


def same_math(args: argparse.Namespace, steps: int = 3) -> dict[str, object]:
    """Both sides from the same weights and noise on one fixed batch: their losses, step by step."""
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as run_dir, contextlib.ExitStack() as held:
        trainer = framework_trainer(args, run_dir)
        held.callback(trainer.session.release)
        reference = TutorialLoop(args.data_root, args.batch, args.precision, device)
        reference.G.load_state_dict(bare_model(trainer.accelerator, trainer.parts.G).state_dict())
        reference.D[0].load_state_dict(bare_model(trainer.accelerator, trainer.parts.D).state_dict())
        reference.noise.set_state(trainer.parts.noise.get_state())
        first = torch.arange(args.batch, device=trainer.parts.images.index_device)
        real = to_model_range(trainer.parts.images.batch(first), trainer.cfg.data.pixel_range)
        framework = [{k: v.item() for k, v in trainer.step(real, None, 0).stats.items()} for _ in range(steps)]
        tutorial = [reference.step(real) for _ in range(steps)]
    return {"framework": framework, "reference": tutorial}


def synthetic_folder(root: Path, n: int = 256) -> Path:
    """`n` random 64 px RGB PNGs: data for the 64 px model wherever the bench runs (its speed does not depend on
    what the images show)."""
    from PIL import Image

    noise = torch.Generator().manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8, generator=noise).numpy()
        Image.fromarray(pixels).save(root / f"{i:04d}.png")
    return root


def matrix(args: argparse.Namespace) -> dict[str, object]:
    """The framework's images/s for the tutorial's 28 px model (MNIST) and the paper's 64 px model (an RGB folder)
    in fp32, bf16 and `auto` (what it picks here is in each row), one after the other in this process."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = synthetic_folder(Path(tmp) / "rgb64")
        rgb64 = ["data.name=folder", f"data.root={folder}", "data.image_size=64", "data.channels=3"]
        for model, sets in (("28 px tutorial dcgan, MNIST", []), ("64 px paper dcgan, RGB folder", rgb64)):
            for precision in ("no", "bf16", "auto"):
                one = argparse.Namespace(**{**vars(args), "precision": precision, "only": "framework",
                                            "set": [*args.set, *sets]})  # fmt: skip
                # Accelerate keeps one state per process and refuses another precision in it: start afresh.
                AcceleratorState._reset_state(reset_partial_state=True)
                timed = run(one)
                rows.append({"model": model, "precision": precision, **timed["framework"],
                             "resolved_precision": timed["setting"]["resolved_precision"]})  # fmt: skip
                print(f"{model}, {precision} ({rows[-1]['resolved_precision']}): {rows[-1]['images_per_s']} images/s",
                      file=sys.stderr, flush=True)  # fmt: skip
    setting = {"device": args.device, "batch": args.batch, "threads": args.threads, "windows": args.windows,
               "steps": args.steps}  # fmt: skip
    return {"setting": setting, "hardware": hardware_record(torch.device(args.device)), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        result = same_math(args) if args.check else matrix(args) if args.matrix else run(args)
    except UserError as e:
        sys.exit(f"error: {e}")
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
