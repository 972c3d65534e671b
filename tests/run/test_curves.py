"""`dcgan curves`: fid against training time from runs' metrics.jsonl, and the time to a target fid."""

import json

import pytest
from PIL import Image

from dcgan.commands import cli
from dcgan.run.pictures import quality_curves, time_to


def _run(path, rows):
    path.mkdir()
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _eval(step, train_s, fid, network="mnist"):
    return {"step": step, f"eval/fid_{network}": fid, "eval/train_s": train_s, "epoch": step / 100}


def test_curves_plot_and_time_to_target(tmp_path, capsys):
    fast = _run(tmp_path / "fast", [{"step": 50, "loss_D": 1.0}, _eval(100, 60, 9.0), _eval(200, 120, 4.0)])
    slow = _run(tmp_path / "slow", [_eval(100, 300, 12.0), _eval(200, 600, 6.0)])
    assert quality_curves(fast) == ("eval/fid_mnist", [(1.0, 9.0), (2.0, 4.0)])  # minutes; loss rows skipped
    assert time_to(quality_curves(fast)[1], 5.0) == 2.0 and time_to(quality_curves(slow)[1], 5.0) is None
    out = tmp_path / "curves.png"
    assert cli.main(["curves", str(fast), str(slow), "--out", str(out), "--target", "5"]) == 0
    printed = capsys.readouterr().out
    assert f"{fast}: 2 min to fid <= 5.0" in printed and f"{slow}: not reached to fid <= 5.0" in printed
    assert Image.open(out).format == "PNG"
    assert cli.main(["curves", str(fast), "--x", "step", "--out", str(out), "--target", "5"]) == 0
    assert f"{fast}: 200 steps to fid <= 5.0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ([[_eval(100, 60, 9.0)], [_eval(100, 60, 9.0, network="fashion_mnist")]], "different feature networks"),
        ([[{"step": 100, "eval/fid_mnist": 9.0}]], "without eval/train_s (made before it was logged); use --x step"),
        ([[{"step": 8, "loss_D": 1.0}]], "logged no evaluation"),
    ],
)
def test_curves_user_errors_are_one_line(tmp_path, capsys, runs, message):
    folders = [str(_run(tmp_path / f"r{i}", rows)) for i, rows in enumerate(runs)]
    assert cli.main(["curves", *folders, "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
