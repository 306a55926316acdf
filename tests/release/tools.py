"""One way to run the external tools the release builder needs.

Every command is an argv list (never a shell), runs with stdin from ``/dev/null`` unless data is
given, in a small explicit environment (``LANG=C.UTF-8``, ``SOURCE_DATE_EPOCH``), and a failure
becomes one :class:`ToolError` that names the tool, its exit code and the tail of its stderr.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.release.spec import SOURCE_DATE_EPOCH

__all__ = ["ToolError", "pipe", "require_tools", "run", "tool_env"]

# Tool -> Debian package that provides it, for the up-front check.
TOOL_PACKAGES: dict[str, str] = {
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "cpio": "cpio",
    "xz": "xz-utils",
    "zstd": "zstd",
    "mksquashfs": "squashfs-tools",
    "depmod": "kmod",
    "skopeo": "skopeo",
}

# Variables a tool may legitimately need from the caller's environment (proxies, temp dir).
_PASSTHROUGH = ("HOME", "TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY")


class ToolError(RuntimeError):
    """An external tool was missing or exited non-zero."""


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH),
    }
    env.update({k: os.environ[k] for k in _PASSTHROUGH if k in os.environ})
    if extra:
        env.update(extra)
    return env


def require_tools(names: Sequence[str]) -> None:
    missing = [n for n in names if shutil.which(n, path=tool_env()["PATH"]) is None]
    if missing:
        pkgs = sorted({TOOL_PACKAGES.get(n, n) for n in missing})
        raise ToolError(
            f"missing tools {', '.join(missing)} needed to build the test release; "
            f"install the Debian packages: apt-get install {' '.join(pkgs)}"
        )


def _fail(argv: Sequence[str], rc: int, stderr: bytes) -> ToolError:
    tail = stderr.decode(errors="replace").strip().splitlines()[-15:]
    return ToolError(f"{shlex.join(argv)} exited with {rc}:\n" + "\n".join(tail))


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    input: bytes | None = None,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """Run one tool and return its stdout (or write it to ``stdout``)."""
    args = [os.fspath(a) for a in argv]
    try:
        if stdout is not None:
            with stdout.open("wb") as out:
                proc = subprocess.run(
                    args,
                    cwd=cwd,
                    input=input,
                    stdin=None if input is not None else subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.PIPE,
                    env=tool_env(env),
                    check=False,
                )
        else:
            proc = subprocess.run(
                args,
                cwd=cwd,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                env=tool_env(env),
                check=False,
            )
    except FileNotFoundError as exc:
        raise ToolError(
            f"{args[0]} not found; install the Debian package "
            f"{TOOL_PACKAGES.get(Path(args[0]).name, Path(args[0]).name)}"
        ) from exc
    if proc.returncode != 0:
        raise _fail(args, proc.returncode, proc.stderr)
    return proc.stdout if stdout is None else b""


def pipe(
    first: Sequence[str | os.PathLike[str]],
    second: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    input: bytes | None = None,
    stdout: Path,
) -> None:
    """``first | second > stdout`` without a shell."""
    a = [os.fspath(x) for x in first]
    b = [os.fspath(x) for x in second]
    with stdout.open("wb") as out:
        p1 = subprocess.Popen(
            a,
            cwd=cwd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=tool_env(),
        )
        p2 = subprocess.Popen(
            b, cwd=cwd, stdin=p1.stdout, stdout=out, stderr=subprocess.PIPE, env=tool_env()
        )
        assert p1.stdout is not None
        p1.stdout.close()  # p2 owns the read end now
        if input is not None:
            assert p1.stdin is not None
            p1.stdin.write(input)
            p1.stdin.close()
        _, err2 = p2.communicate()
        err1 = p1.stderr.read() if p1.stderr else b""
        p1.wait()
        if p1.stderr:
            p1.stderr.close()
    if p1.returncode != 0:
        raise _fail(a, p1.returncode, err1)
    if p2.returncode != 0:
        raise _fail(b, p2.returncode, err2)
