"""The run folder's pictures: the fixed-noise grids' inputs, the loss plot and the progress GIF (the tutorial's
result.gif), and the quality curves that compare runs (fid against training time)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from dcgan.errors import UserError
from dcgan.models.sampling import per_class_labels
from dcgan.rng import derive_seed
from dcgan.run.layout import read_rows

GIF_FRAME_MS = 400


def plot_losses(metrics_file: Path, out: Path) -> None:
    """loss_D and loss_G (top) and D(x), D(G(z)) (bottom) against the step, from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    from matplotlib import pyplot as plt

    rows = [r for r in read_rows(metrics_file) if "loss_D" in r]  # evaluation lines share the file
    steps = [r["step"] for r in rows]
    fig, (losses, outputs) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for key, label in (("loss_D", "D loss"), ("loss_G", "G loss")):
        losses.plot(steps, [r[key] for r in rows], label=label)
    for key, label in (("D_x", "D(x)"), ("D_G_z", "D(G(z))")):
        outputs.plot(steps, [r[key] for r in rows], label=label)
    losses.set_ylabel("loss")
    outputs.set_ylabel("mean D output")
    outputs.set_xlabel("step")
    for axes in (losses, outputs):
        axes.legend()
        axes.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


QUALITY_AXES = {
    "train_s": ("eval/train_s", 1 / 60, "training minutes (evaluations left out)"),
    "step": ("step", 1, "step"),
}


def quality_curves(run_dir: Path, x: str = "train_s") -> tuple[str, list[tuple[float, float]]]:
    """(the fid key, [(x, fid) of each evaluation]) from a run's metrics.jsonl; x in minutes for train_s."""
    key, per_unit, _ = QUALITY_AXES[x]
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl: is it a run folder?")
    rows = [r for r in read_rows(metrics) if any(k.startswith("eval/fid_") for k in r)]
    if not rows:
        raise UserError(f"{run_dir} logged no evaluation (eval.every_epochs / eval.every_steps were off)")
    fid = next(k for k in rows[0] if k.startswith("eval/fid_"))
    if any(key not in r for r in rows):
        raise UserError(f"{run_dir} logged evaluations without {key} (made before it was logged); use --x step")
    return fid, [(r[key] * per_unit, r[fid]) for r in rows]


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first x at which the curve's fid is at most `target`, or None if it never gets there."""
    return next((x for x, fid in curve if fid <= target), None)


def plot_quality(
    runs: list[Path], out: Path, x: str = "train_s", target: float | None = None
) -> list[list[tuple[float, float]]]:
    """fid (log scale) against training time or step, one line per run (labelled with its path as given) and
    a dashed line at `target`, to `out`; returns each run's curve (`quality_curves`)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    curves = [quality_curves(run, x) for run in runs]
    if len({fid for fid, _ in curves}) > 1:
        raise UserError("these runs are scored by different feature networks; their fids cannot share a plot")
    fig, axes = plt.subplots(figsize=(7, 4.5))
    for run, (_, points) in zip(runs, curves, strict=True):
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=str(run))
    if target is not None:
        axes.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"fid {target:g}")
    axes.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")  # 20, not 2 x 10^1
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_formatter(plain)
    axes.set_xlabel(QUALITY_AXES[x][2])
    axes.set_ylabel(curves[0][0].removeprefix("eval/"))
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return [points for _, points in curves]


def make_gif(samples_dir: Path, out: Path) -> int:
    """One frame per fixed-noise grid, in step order; returns the number of frames."""
    frames = sorted(samples_dir.glob("step_*.png"))
    if not frames:
        raise UserError(f"no sample grids in {samples_dir}/ to make a GIF from; has the run saved any?")
    images = [_frame(path) for path in frames]
    images[0].save(out, save_all=True, append_images=images[1:], duration=GIF_FRAME_MS, loop=0)
    return len(images)


def _frame(path: Path) -> Image.Image:
    """A grid as a loaded grey or RGB image (GIF frames of one mode)."""
    with Image.open(path) as image:
        return image.convert("RGB" if image.mode == "RGB" else "L")


FIXED_SAMPLES = 64  # an unconditional run's fixed-noise grid: 8 x 8


FIXED_COLUMNS = 8  # a conditional run's: one row per class, the same noise down each column


def fixed_inputs(
    seed: int, z_dim: int, num_classes: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
    """(noise, class indices or None, grid columns or None) of a run's fixed-noise grids, the same at every
    step so that the progress GIF shows G alone changing; a conditional run's has one row per class."""
    stream = torch.Generator().manual_seed(derive_seed(seed, "fixed"))
    if not num_classes:
        return torch.randn(FIXED_SAMPLES, z_dim, generator=stream).to(device), None, None
    columns = torch.randn(FIXED_COLUMNS, z_dim, generator=stream)
    labels = per_class_labels(num_classes, FIXED_COLUMNS)
    return columns.repeat(num_classes, 1).to(device), labels.to(device), FIXED_COLUMNS


def grid_caption(classes: tuple[str, ...]) -> str | None:
    """What a conditional run's grid shows, named (W&B and TensorBoard captions)."""
    if not classes:
        return None
    return f"one row per class, top to bottom: {', '.join(classes)}; the same noise down each column"
