"""The codebase stays ruff-clean (lint and format), as STYLE.md asks."""

import subprocess
import sys

from conftest import REPO


def test_ruff_lint_and_format():
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
