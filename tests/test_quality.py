"""The project's own checks run as part of the suite: ruff, mypy --strict, generated code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    "argv",
    [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy")],
        ["bash", "scripts/gen-proto", "--check"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict", "generated-protobuf"],
)
def test_check(argv: list[str]) -> None:
    result = run(argv)
    assert result.returncode == 0, result.stdout + result.stderr
