"""The machine a benchmark ran on: CPU, cores, memory, kernel, Python and tool versions.

Results are only comparable on the same machine, so every result file starts with this record.
Tool versions are the first line each tool prints about itself; a missing tool is "missing".
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["describe"]

_TOOLS = (
    ("xz", ["xz", "--version"]),
    ("zstd", ["zstd", "--version"]),
    ("mksquashfs", ["mksquashfs", "-version"]),
    ("tar", ["tar", "--version"]),
    ("gzip", ["gzip", "--version"]),
    ("xorriso", ["xorriso", "-version"]),
    ("qemu-img", ["qemu-img", "--version"]),
    ("sbsign", ["sbsign", "--version"]),
    ("nginx", ["nginx", "-v"]),
    ("docker-registry", ["docker-registry", "--version"]),
    ("skopeo", ["skopeo", "--version"]),
)
_PACKAGES = ("httpx", "uvicorn", "starlette", "grpcio", "zstandard")


def _first_line(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "missing"
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else f"exit {proc.returncode}"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def _git_revision(repo: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "unknown"


def describe(repo: Path) -> dict[str, object]:
    """Everything about the machine and software that the numbers depend on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_mib": _mem_total_mib(),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "unknown"),
        "python": platform.python_version(),
        "revision": _git_revision(repo),
        "packages": {name: metadata.version(name) for name in _PACKAGES},
        "tools": {name: _first_line(argv) for name, argv in _TOOLS},
    }
