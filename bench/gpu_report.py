"""Collect what bench/gpu.sh measured into RESULTS/gpu-<card>-<date>.json and a markdown table beside it.

python bench/gpu_report.py RESULTS_DIR RUNS_DIR
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

import yaml

TARGET_IMAGES_PER_S = 300_000  # bf16, batch 1024 per process (issue 7)
TARGET_20_EPOCHS_S = 60
TARGET_CPU_FP32, TARGET_CPU_BF16 = 1.3, 2.0  # batch 64, one thread, against the fp32 reference loop


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_summary(runs: Path, name: str) -> dict:
    """Wall time of a training run and how much of it was steady-state training."""
    timing = _load(runs / f"{name}.time.json")
    metrics = runs / name / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    out = {"name": name, "rc": timing.get("rc"), "wall_s": timing.get("wall_ms", 0) / 1000, "steps": 0}
    if len(rows) >= 3:
        batch = yaml.safe_load((runs / name / "config.yaml").read_text())["train"]["batch_size"]  # the resolved config
        steady = statistics.median(r["images_per_s"] for r in rows[2:])  # the first windows hold compile/warm-up
        steady_s = rows[-1]["step"] * batch / steady
        out.update(
            steps=rows[-1]["step"],
            steady_images_per_s=round(steady),
            steady_train_s=round(steady_s, 1),
            other_s=round(out["wall_s"] - steady_s, 1),
            final={k: rows[-1][k] for k in ("loss_D", "loss_G", "D_x", "D_G_z")},
        )
    return out


def bench_rows(results: Path) -> list[dict]:
    rows = []
    for path in sorted((results / "bench").glob("*.json")):
        data = _load(path)
        keys = ("setting", "framework", "reference", "ratio", "framework_profile")
        row = {"name": path.stem, **{k: data.get(k) for k in keys}}
        row["hardware"] = data.get("hardware")
        row["skipped"] = data.get("skipped") or ("failed" if not data else None)
        rows.append(row)
    return rows


def markdown(report: dict) -> str:
    hw = report["hardware"] or {}
    out = [
        f"# GPU results: {hw.get('gpu', '?')}, {hw.get('date', '?')}",
        "",
        f"torch {hw.get('torch')}, CUDA {hw.get('cuda')}, accelerate {hw.get('accelerate')}, CPU {hw.get('cpu')}",
        "",
        "## Throughput (bench/throughput.py, images/s, median of 5 windows of 50 steps, alternating)",
        "",
        "| run | batch | precision | compile | framework | reference | ratio | GPU peak GB (fw / ref) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["throughput"]:
        if row["skipped"]:
            out.append(f"| {row['name']} | | | | {row['skipped']} | | | |")
            continue
        s, fw, ref = row["setting"], row["framework"], row["reference"]
        out.append(
            f"| {row['name']} | {s['batch']} | {s['precision']} | {s['compile']} | "
            f"{fw['images_per_s']:,.0f} (±{fw['spread_pct']}%) | {ref['images_per_s']:,.0f} | {row['ratio']}x | "
            f"{fw.get('gpu_peak_GB')} / {ref.get('gpu_peak_GB')} |"
        )
    profiled = [row for row in report["throughput"] if row.get("framework_profile")]
    if profiled:
        out += ["", "## Where a framework step's time goes (torch.profiler, 10 steps; bench/*.profile.txt)", ""]
        out += [f"- {row['name']}: {json.dumps(row['framework_profile'])}" for row in profiled]
    out += ["", "## 20-epoch runs (train.py, batch 32, 37,500 steps)", ""]
    out += [
        "| run | exit | wall s | steady images/s | steady training s | start-up, compile, saving s |",
        "|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        out.append(
            f"| {run['name']} | {run['rc']} | {run['wall_s']:.1f} | {run.get('steady_images_per_s', '-')} | "
            f"{run.get('steady_train_s', '-')} | {run.get('other_s', '-')} |"
        )
    out += ["", "## Targets", ""] + [f"- {line}" for line in report["targets"]]
    return "\n".join(out) + "\n"


def targets(report: dict) -> list[str]:
    by_name = {row["name"]: row for row in report["throughput"] if not row["skipped"]}
    lines = []
    best = max(
        (by_name[n]["framework"]["images_per_s"] for n in ("b1024_bf16", "b1024_bf16_compiled") if n in by_name),
        default=None,
    )
    if best is not None:
        lines.append(f"bf16 batch 1024: {best:,.0f} images/s (target {TARGET_IMAGES_PER_S:,})")
        if "b32_bf16" in by_name:
            ref = by_name["b32_bf16"]["reference"]["images_per_s"]
            ratio = best / ref
            lines.append(f"that is {ratio:.1f}x the reference loop at batch 32 bf16 ({ref:,.0f} images/s, target 20x)")
    if "cpu_b64_fp32" in by_name and "cpu_b64_bf16" in by_name:
        fp32, bf16 = by_name["cpu_b64_fp32"], by_name["cpu_b64_bf16"]
        flags = ", ".join(bf16["hardware"].get("cpu_bf16_flags") or []) or "none"
        lines.append(
            f"host CPU ({bf16['hardware']['cpu']}; bf16 flags: {flags}), batch 64, one thread: fp32 {fp32['ratio']}x "
            f"(target {TARGET_CPU_FP32}x), bf16 {bf16['ratio']}x the fp32 reference loop (target {TARGET_CPU_BF16}x)"
        )
    for run in report["runs"]:
        if run["name"] == "dcgan_default_compiled" and "steady_train_s" in run:
            lines.append(
                f"20 epochs compiled: {run['wall_s']:.1f} s end to end, {run['steady_train_s']} s of steady training "
                f"(target {TARGET_20_EPOCHS_S} s excluding start-up and compile)"
            )
    return lines


def main() -> None:
    results, runs = Path(sys.argv[1]), Path(sys.argv[2])
    throughput = bench_rows(results)
    hardware = next((row["hardware"] for row in throughput if row["hardware"]), None)
    names = sorted(p.name.removesuffix(".time.json") for p in runs.glob("*.time.json"))
    report = {"hardware": hardware, "throughput": throughput, "runs": [run_summary(runs, n) for n in names]}
    report["targets"] = targets(report)
    card = re.sub(r"[^A-Za-z0-9]+", "-", (hardware or {}).get("gpu", "gpu")).strip("-").lower()
    stem = results / f"gpu-{card}-{(hardware or {}).get('date', 'undated')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
