"""bench/throughput.py runs, and its two contenders do the same math (it is a benchmark; this is not)."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import DATA_ROOT, REPO, run_python

BENCH = REPO / "bench" / "throughput.py"


def _bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "result.json"
    proc = run_python([sys.executable, str(BENCH), "--data-root", str(DATA_ROOT), "--json", str(out), *args])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_framework_and_tutorial_loop_compute_the_same_losses(tmp_path, compiled):
    result = _bench(tmp_path, "--check", "--batch", "16", *(["--compile"] if compiled else []))
    framework, reference = result["framework"], result["reference"]
    assert len(framework) == len(reference) == 3
    for key in framework[0]:
        # First step: same weights, noise and batch, so only float rounding separates the two.
        assert framework[0][key] == pytest.approx(reference[0][key], rel=1e-5), key
        # Later steps carry each side's rounding through Adam, which magnifies it a little.
        for step in range(1, 3):
            assert framework[step][key] == pytest.approx(reference[step][key], rel=1e-3), (step, key)
    assert framework[1]["loss_D"] != framework[0]["loss_D"]  # the optimisers really stepped


def test_throughput_reports_both_sides_with_hardware(tmp_path):
    profile = tmp_path / "profile.txt"
    result = _bench(
        tmp_path, "--batch", "8", "--windows", "2", "--steps", "2", "--warmup", "1", "--profile", str(profile)
    )
    for side in ("framework", "reference"):
        assert result[side]["images_per_s"] > 0
        assert len(result[side]["windows"]) == 2
        assert result[side]["rss_MB"] > 0
    assert result["ratio"] == pytest.approx(
        result["framework"]["images_per_s"] / result["reference"]["images_per_s"], rel=1e-2
    )
    assert result["hardware"]["cpu"] and result["hardware"]["torch"]
    assert result["setting"] == {**result["setting"], "device": "cpu", "batch": 8, "precision": "no"}
    assert result["framework_profile"]["wall_ms_per_step"] > 0
    assert result["framework_profile"]["aten_calls_per_step"] > 100  # two networks' forward, backward and Adam
    assert "aten::convolution_backward" in profile.read_text()
    assert isinstance(result["hardware"]["cpu_bf16_flags"], list)
