"""What a run reports, and where: the console, metrics.jsonl, sample grids, and W&B or TensorBoard.

Trackers go through Accelerate (`log_with`, `init_trackers`, `accelerator.log`). A tracker is a
convenience, never a reason to stop training: if one fails to start or to log, we warn once and go on
without it. Files are written and lines printed by the main process only.
"""

from __future__ import annotations

import json
import netrc
import os
import secrets
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import accelerate
import torch
from accelerate import Accelerator
from tqdm import tqdm

from dcgan import __version__, hardware
from dcgan.config import Config, LogConfig, change_lines, to_dict, to_flat_dict
from dcgan.io.images import to_pixels, to_uint8
from dcgan.run.layout import RunDir


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class RunLog:
    def __init__(self, accelerator: Accelerator, cfg: Config, run: RunDir, total_steps: int, start_step: int):
        self.accelerator, self.cfg, self.run = accelerator, cfg, run
        self.main = accelerator.is_main_process
        self.trackers_on = cfg.log.tracker != "none"
        self.total_steps = total_steps
        interactive = self.main and sys.stdout.isatty()
        self.bar = (
            tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stdout)
            if interactive
            else None
        )
        self.start_step = start_step
        if self.main:
            self._forget_after(start_step)

    def _forget_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: drop their old metrics lines."""
        path = self.run.metrics
        if path.is_file():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept))

    # -- trackers ----------------------------------------------------------------------------------

    def _tracker_failed(self, what: str, error: Exception) -> None:
        if self.trackers_on:
            warnings.warn(f"{self.cfg.log.tracker} {what} failed ({error}); training goes on without it", stacklevel=3)
        self.trackers_on = False

    def start(self, changes: dict[str, tuple], precision_why: str = "as configured") -> None:
        """Record this start of the run (run_history.jsonl: the machine, and the config `changes` a resume
        made), then start the tracker with the resolved config; a resumed run continues the same W&B run."""
        machine = hardware.describe(self.accelerator.device)
        if self.main:
            self._record_start(machine, changes, precision_why)
        if self.trackers_on:
            self._start_tracker(machine, changes)

    def _record_start(self, machine: dict[str, Any], changes: dict[str, tuple], precision_why: str) -> None:
        acc = self.accelerator
        entry = {
            "step": self.start_step,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "processes": acc.num_processes,
            "device": acc.device.type,
            "precision": self.cfg.train.mixed_precision,
            "precision_why": precision_why,
            **machine,
            "versions": _versions(),
            "changes": {key: list(pair) for key, pair in sorted(changes.items())},
        }
        with self.run.history.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def _start_tracker(self, machine: dict[str, Any], changes: dict[str, tuple]) -> None:
        acc, log = self.accelerator, self.cfg.log
        config = {
            **to_flat_dict(self.cfg),
            "world_size": acc.num_processes,
            "precision": self.cfg.train.mixed_precision,
            "device": acc.device.type,
            "cpu": machine["cpu"],
            "cpu_flags": " ".join(machine["cpu_flags"]),
            **({"gpu": machine["gpu"]} if "gpu" in machine else {}),
            "versions": _versions(),
        }
        if changes:  # kept beside those of earlier resumes: W&B merges a resumed run's config
            config[f"changed_at_step_{self.start_step}"] = "; ".join(change_lines(changes))
        init_kwargs = {"wandb": _wandb_settings(log, self.run, self._wandb_run_id())} if log.tracker == "wandb" else {}
        try:
            acc.init_trackers(log.project, config, init_kwargs=init_kwargs)
            if log.tracker == "wandb" and self.main:
                run = acc.get_tracker("wandb", unwrap=True)
                for name in ("eval/fid_*", "eval/kid", "eval/kid_inception"):  # lower is better: tables show the best
                    run.define_metric(name, summary="min")
        except Exception as e:  # noqa: BLE001 - any tracker failure must leave training running
            self._tracker_failed("start", e)
            return
        if log.tracker == "wandb" and os.environ.get("WANDB_MODE") == "offline":
            self.print(f"W&B is offline; upload this run later with: wandb sync {self.run}/wandb/offline-run-*")

    def _wandb_run_id(self) -> str | None:
        """The run's W&B id, created once and kept in the run folder so resumes log to the same run."""
        if not self.main:
            return None
        path = self.run.wandb_id
        if path.is_file():
            return path.read_text().strip()
        run_id = secrets.token_hex(6)  # W&B accepts any short [a-z0-9] id
        path.write_text(run_id + "\n")
        return run_id

    # -- reporting ---------------------------------------------------------------------------------

    def print(self, line: str) -> None:
        """A line on the main process's stdout, above the bar when there is one."""
        if not self.main:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def advance(self) -> None:
        """One step done (no host sync: the bar only counts)."""
        if self.bar is not None:
            self.bar.update(1)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Report rank-averaged values: bar or plain line, metrics.jsonl, tracker."""
        if self.main:
            self._append_jsonl(values, step)
            if self.bar is not None:
                self.bar.set_description(f"epoch {values['epoch']:.2f}")
                self.bar.set_postfix(
                    loss_D=f"{values['loss_D']:.3f}", loss_G=f"{values['loss_G']:.3f}",
                    img_s=f"{values['images_per_s']:.0f}", refresh=False,
                )  # fmt: skip
            else:
                self.print(self._plain_line(values, step))
        self._send(values, step)

    def record(self, values: dict[str, float], step: int, line: str) -> None:
        """Main process: values other than the training metrics (evaluations) to metrics.jsonl, tracker and a line."""
        self._append_jsonl(values, step)
        self.print(line)
        self._send(values, step)

    def _append_jsonl(self, values: dict[str, float], step: int) -> None:
        with self.run.metrics.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def _send(self, values: dict[str, float], step: int) -> None:
        if self.trackers_on:
            try:
                self.accelerator.log(values, step=step)
            except Exception as e:  # noqa: BLE001
                self._tracker_failed("log", e)

    def _plain_line(self, values: dict[str, float], step: int) -> str:
        rate = values["images_per_s"] / (self.cfg.train.batch_size * self.accelerator.num_processes)
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        shown = " ".join(f"{k} {v:.4g}" for k, v in values.items())
        return f"step {step}/{self.total_steps} {shown} eta {_duration(eta)}"

    def image(self, grid: torch.Tensor, step: int, caption: str | None = None) -> None:
        """Send a (C, H, W) grid in [0, 1] to the tracker as uint8 (W&B shows float grids black), with a
        caption (W&B's image caption; TensorBoard, whose images have none, gets it as text beside them)."""
        if not (self.trackers_on and self.main):
            return
        try:
            if self.cfg.log.tracker == "wandb":
                import wandb

                run = self.accelerator.get_tracker("wandb", unwrap=True)
                run.log({"samples": [wandb.Image(to_pixels(grid[None])[0], caption=caption)]}, step=step)
            else:
                tracker = self.accelerator.get_tracker("tensorboard")
                tracker.log_images({"samples": to_uint8(grid).cpu()[None]}, step=step, dataformats="NCHW")
                if caption:
                    tracker.writer.add_text("samples/caption", caption, global_step=step)
        except Exception as e:  # noqa: BLE001
            self._tracker_failed("image logging", e)

    def model_artifact(self, path: Path, step: int, metrics: dict[str, float]) -> None:
        """Main process: the exported generator as a W&B model artifact (recorded offline too, uploaded with
        the run), with the resolved config and the last evaluation as its metadata."""
        if not (self.trackers_on and self.main and self.cfg.log.tracker == "wandb"):
            return
        import wandb

        try:
            run = self.accelerator.get_tracker("wandb", unwrap=True)
            metadata = {"step": step, "config": to_dict(self.cfg), "metrics": metrics}
            artifact = wandb.Artifact(f"{run.id}-generator", type="model", metadata=metadata)
            artifact.add_file(str(path), name=path.name)
            run.log_artifact(artifact, aliases=["latest", f"step-{step}"])
        except Exception as e:  # noqa: BLE001
            self._tracker_failed("model artifact", e)

    def close(self) -> None:
        """Finish the trackers (the process group is left to `distributed.shutdown`, after the last collective)."""
        if self.bar is not None:
            self.bar.close()
        try:
            for tracker in self.accelerator.trackers:
                tracker.finish()
        except Exception as e:  # noqa: BLE001
            self._tracker_failed("shutdown", e)
        if self.cfg.log.tracker == "wandb" and self.main:
            import wandb

            wandb.teardown()  # finish() leaves W&B's background service running


def _wandb_settings(log: LogConfig, run: RunDir, run_id: str | None) -> dict[str, Any]:
    """`wandb.init`'s arguments for this run (offline where no credentials are found, the usual case on cluster
    nodes without internet); a SLURM array's tasks share a group."""
    if "WANDB_MODE" not in os.environ and not _has_wandb_credentials():
        os.environ["WANDB_MODE"] = "offline"
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    return {
        "dir": str(run),
        "id": run_id,
        "resume": "allow",
        "name": log.run_name or run.root.resolve().name,
        "group": log.group or (f"array-{array_job}" if array_job else None),
        "entity": log.entity or None,
        "tags": list(log.tags) or None,
    }


def _versions() -> str:
    return f"dcgan {__version__}, torch {torch.__version__}, accelerate {accelerate.__version__}"


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Meter:
    """Sums named per-step values on the device, and keeps the newest gradient norms (measured on log steps); the
    host reads them (and ranks average them) only at flush."""

    NORMS = ("grad_norm_D", "grad_norm_G")

    def __init__(self, device: torch.device):
        self.device = device
        self.names: tuple[str, ...] = ()
        self.total: torch.Tensor | None = None
        self.norms: torch.Tensor | None = None
        self.count = 0
        self.started = time.perf_counter()

    def add(self, values: dict[str, torch.Tensor], norms: torch.Tensor | None = None) -> None:
        """One step's values; `norms`: (D's, G's) gradient norm, on a measured step."""
        if self.total is None:
            self.names = tuple(values)
            self.total = torch.zeros(len(self.names), device=self.device)
        self.total += torch.stack([values[name].float() for name in self.names])
        self.count += 1
        if norms is not None:
            self.norms = norms

    def flush(self, accelerator) -> tuple[dict[str, float], int, float]:
        """({name: rank-averaged mean since the last flush, and the newest gradient norms}, steps, seconds since
        then)."""
        norms = self.norms if self.norms is not None else torch.zeros(2, device=self.device)
        local = torch.cat([self.total / self.count, norms.float()])
        means = accelerator.reduce(local, reduction="mean").tolist()
        now = time.perf_counter()
        steps, seconds = self.count, now - self.started
        self.started, self.count = now, 0
        self.total.zero_()
        return dict(zip((*self.names, *self.NORMS), means, strict=True)), steps, seconds
