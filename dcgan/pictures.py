"""The run folder's pictures: the loss plot and the progress GIF (the tutorial's result.gif)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from dcgan.errors import UserError

GIF_FRAME_MS = 400


def plot_losses(metrics_file: Path, out: Path) -> None:
    """loss_D and loss_G (top) and D(x), D(G(z)) (bottom) against the step, from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    from matplotlib import pyplot as plt

    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss_D" in r]  # evaluation lines share the file
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
