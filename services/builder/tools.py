"""The one way the builder runs external tools (mksquashfs, depmod, xz, zstd, ...).

Every child process goes through :func:`run` (or :func:`run_async`, or :func:`feed` when Python
produces the child's stdin): argv lists only, never a shell; stdin from ``/dev/null`` unless
given; a clean, explicit environment (``LANG=C.UTF-8``, ``SOURCE_DATE_EPOCH``, a fixed
``PATH``) so the host's locale or variables never change an output; the command logged as
``+ <argv>`` at debug level. Each child runs in its own process group, which is killed when the
call times out, is cancelled (``cancel`` event for threads, task cancellation for asyncio), or
the caller fails while feeding it.

Whatever goes wrong becomes one :class:`ToolError` (a ``BuildFailed``) naming the tool, its
exit code and the tail of its stderr; a tool that is not installed names the Debian package
that provides it (:data:`TOOL_PACKAGES`). :func:`check_tools` checks a whole list up front.
stderr is spooled to an anonymous temporary file, so a chatty tool cannot fill memory; stdout
goes to a file or file object, or is captured (for small outputs only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from services.builder.errors import BuildFailed

__all__ = [
    "BUILDER_TOOLS",
    "DEFAULT_PATH",
    "SOURCE_DATE_EPOCH",
    "TOOL_PACKAGES",
    "MissingTools",
    "ToolError",
    "ToolResult",
    "check_tools",
    "feed",
    "run",
    "run_async",
    "tool_env",
]

log = logging.getLogger(__name__)

# Image Factory's own value (talos-assets.md §16): every timestamp the tools write.
SOURCE_DATE_EPOCH = 1559424892
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Tool -> the Debian package that provides it (for "install X" hints).
TOOL_PACKAGES: Mapping[str, str] = {
    "cert-to-efi-sig-list": "efitools",
    "cp": "coreutils",
    "grub-mkimage": "grub-common",
    "gzip": "gzip",
    "mattrib": "mtools",
    "tar": "tar",
    "cpio": "cpio",
    "depmod": "kmod",
    "grub-mkrescue": "grub-common",
    "mformat": "mtools",
    "openssl": "openssl",
    "pigz": "pigz",
    "sign-efi-sig-list": "efitools",
    "mcopy": "mtools",
    "mkfs.vfat": "dosfstools",
    "mkfs.xfs": "xfsprogs",
    "mksquashfs": "squashfs-tools",
    "mmd": "mtools",
    "objcopy": "binutils",
    "qemu-img": "qemu-utils",
    "sbsign": "sbsigntool",
    "sfdisk": "fdisk",
    "unsquashfs": "squashfs-tools",
    "xorriso": "xorriso",
    "xz": "xz-utils",
    "zstd": "zstd",
}

# Every tool some asset kind runs; the builder checks them all before it starts serving.
BUILDER_TOOLS: tuple[str, ...] = (
    "xz", "zstd", "gzip", "tar", "cp",
    "mksquashfs", "unsquashfs", "depmod",
    "sbsign", "sign-efi-sig-list",
    "xorriso", "grub-mkrescue", "grub-mkimage",
    "mformat", "mcopy", "mmd", "mattrib", "mkfs.vfat", "mkfs.xfs", "qemu-img",
)  # fmt: skip

_STDERR_TAIL = 2000
_KILL_GRACE = 5.0
_POLL = 0.1

Argv = Sequence[str | os.PathLike[str]]
Stdin = Path | bytes | None
Stdout = Path | BinaryIO | None


class ToolError(BuildFailed):
    """An external tool could not be run, failed, timed out or was cancelled."""

    def __init__(self, tool: str, detail: str, *, returncode: int | None = None, stderr: str = ""):
        tail = stderr.strip()[-_STDERR_TAIL:]
        super().__init__(f"{tool}: {detail}" + (f"\n{tail}" if tail else ""))
        self.tool = tool
        self.returncode = returncode
        self.stderr_tail = tail


class MissingTools(BuildFailed):
    """Tools the builder needs are not installed; the message names their Debian packages."""

    def __init__(self, missing: Sequence[str]) -> None:
        packages = sorted({TOOL_PACKAGES.get(t, t) for t in missing})
        named = ", ".join(
            f"{t} (Debian package {TOOL_PACKAGES[t]})" if t in TOOL_PACKAGES else t for t in missing
        )
        super().__init__(
            f"required build tools are missing: {named}; "
            f"install them with: apt-get install {' '.join(packages)}"
        )
        self.missing = tuple(missing)


@dataclass(frozen=True)
class ToolResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes  # empty unless stdout was captured
    stderr: str


def tool_env(
    extra: Mapping[str, str] | None = None, *, source_date_epoch: int = SOURCE_DATE_EPOCH
) -> dict[str, str]:
    """The complete environment of every tool: nothing is inherited from the service."""
    env = {
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
    }
    env.update(extra or {})
    return env


def check_tools(names: Sequence[str]) -> None:
    """Raise :class:`MissingTools` naming every tool of ``names`` not found on ``PATH``."""
    missing = [n for n in dict.fromkeys(names) if shutil.which(n, path=DEFAULT_PATH) is None]
    if missing:
        raise MissingTools(missing)


def _argv(argv: Argv) -> list[str]:
    out = [os.fspath(a) for a in argv]
    if not out:
        raise ValueError("empty argv")
    return out


def _tool(argv: Sequence[str]) -> str:
    return os.path.basename(argv[0])


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read_tail(err: IO[bytes]) -> str:
    err.seek(0, os.SEEK_END)
    size = err.tell()
    err.seek(max(0, size - 4 * _STDERR_TAIL))
    return err.read().decode("utf-8", "replace")


@contextlib.contextmanager
def _opened_stdout(stdout: Stdout) -> Iterator[IO[bytes]]:
    if stdout is None:
        with tempfile.TemporaryFile() as f:
            yield f
    elif isinstance(stdout, Path):
        with stdout.open("wb") as f:
            yield f
    else:
        stdout.flush()
        yield stdout


@contextlib.contextmanager
def _opened_stdin(stdin: Stdin) -> Iterator[int | IO[bytes]]:
    if stdin is None:
        yield subprocess.DEVNULL
    elif isinstance(stdin, Path):
        with stdin.open("rb") as f:
            yield f
    else:
        with tempfile.TemporaryFile() as f:
            f.write(stdin)
            f.seek(0)
            yield f


def _spawn(
    argv: list[str],
    *,
    stdin: int | IO[bytes],
    stdout: IO[bytes],
    stderr: IO[bytes],
    cwd: Path | None,
    env: Mapping[str, str] | None,
    source_date_epoch: int,
) -> subprocess.Popen[bytes]:
    log.debug("+ %s", shlex.join(argv))
    try:
        return subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=tool_env(env, source_date_epoch=source_date_epoch),
            start_new_session=True,
            close_fds=True,
        )
    except FileNotFoundError as exc:
        tool = _tool(argv)
        package = TOOL_PACKAGES.get(tool)
        hint = f" (install the Debian package {package})" if package else ""
        raise ToolError(tool, f"not found{hint}") from exc
    except OSError as exc:
        raise ToolError(_tool(argv), f"cannot be started: {exc}") from exc


def _wait(
    proc: subprocess.Popen[bytes],
    argv: list[str],
    timeout: float | None,
    cancel: threading.Event | None,
) -> int:
    """Wait for the child; kill its group and raise on timeout or cancellation."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if cancel is not None and cancel.is_set():
            _kill_group(proc.pid)
            proc.wait()
            raise ToolError(_tool(argv), "cancelled")
        step = _POLL if cancel is not None else None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_group(proc.pid)
                proc.wait()
                raise ToolError(_tool(argv), f"timed out after {timeout:g}s")
            step = left if step is None else min(step, left)
        try:
            return proc.wait(timeout=step)
        except subprocess.TimeoutExpired:
            continue


def _check(argv: list[str], returncode: int, stderr: str, check: bool) -> None:
    if check and returncode != 0:
        raise ToolError(
            _tool(argv), f"failed with exit code {returncode}", returncode=returncode, stderr=stderr
        )


def run(
    argv: Argv,
    *,
    cwd: Path | None = None,
    stdin: Stdin = None,
    stdout: Stdout = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    cancel: threading.Event | None = None,
    source_date_epoch: int = SOURCE_DATE_EPOCH,
) -> ToolResult:
    """Run one tool to completion.

    ``stdin``: ``None`` (``/dev/null``), a file to read, or bytes. ``stdout``: ``None`` to
    capture it into :attr:`ToolResult.stdout` (small outputs only), a path to (over)write, or
    an open binary file (written at its current position, e.g. opened for append). ``env``
    adds to :func:`tool_env`. Raises :class:`ToolError` for a missing tool, a non-zero exit
    (unless ``check=False``), a timeout, or ``cancel`` being set.
    """
    args = _argv(argv)
    with (
        _opened_stdin(stdin) as child_in,
        _opened_stdout(stdout) as child_out,
        tempfile.TemporaryFile() as err,
    ):
        proc = _spawn(
            args,
            stdin=child_in,
            stdout=child_out,
            stderr=err,
            cwd=cwd,
            env=env,
            source_date_epoch=source_date_epoch,
        )
        try:
            returncode = _wait(proc, args, timeout, cancel)
        finally:
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait()
        stderr = _read_tail(err)
        captured = b""
        if stdout is None:
            child_out.seek(0)
            captured = child_out.read()
    if stderr.strip():
        log.debug("%s stderr: %s", _tool(args), stderr.strip()[-_STDERR_TAIL:])
    _check(args, returncode, stderr, check)
    return ToolResult(tuple(args), returncode, captured, stderr)


def feed(
    argv: Argv,
    produce: Callable[[BinaryIO], object],
    *,
    stdout: Path | BinaryIO,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    source_date_epoch: int = SOURCE_DATE_EPOCH,
) -> ToolResult:
    """Run a filter whose stdin Python writes: ``produce(pipe)`` then wait, e.g. a cpio
    writer piped through ``zstd`` into a file. Memory stays bounded by the pipe buffer.

    If the tool dies early, the broken pipe is reported as the tool's failure (with its
    stderr); if ``produce`` raises, the tool is killed and the exception propagates.
    """
    args = _argv(argv)
    with _opened_stdout(stdout) as child_out, tempfile.TemporaryFile() as err:
        proc = _spawn(
            args,
            stdin=subprocess.PIPE,
            stdout=child_out,
            stderr=err,
            cwd=cwd,
            env=env,
            source_date_epoch=source_date_epoch,
        )
        assert proc.stdin is not None
        try:
            try:
                produce(proc.stdin)  # type: ignore[arg-type]
                proc.stdin.close()
            except BrokenPipeError:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
                returncode = _wait(proc, args, timeout, cancel)
                stderr = _read_tail(err)
                raise ToolError(
                    _tool(args),
                    f"stopped reading its input (exit code {returncode})",
                    returncode=returncode,
                    stderr=stderr,
                ) from None
            returncode = _wait(proc, args, timeout, cancel)
        finally:
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait()
        stderr = _read_tail(err)
    _check(args, returncode, stderr, True)
    return ToolResult(tuple(args), returncode, b"", stderr)


async def run_async(
    argv: Argv,
    *,
    cwd: Path | None = None,
    stdin: Path | None = None,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    source_date_epoch: int = SOURCE_DATE_EPOCH,
) -> ToolResult:
    """:func:`run` for asyncio: the child's process group is killed when the task is
    cancelled, so wrap the call in ``asyncio.timeout()`` for a deadline. ``stdout=None``
    captures it (small outputs only)."""
    args = _argv(argv)
    with contextlib.ExitStack() as stack:
        child_in = stack.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        child_out = stack.enter_context(stdout.open("wb")) if stdout else asyncio.subprocess.PIPE
        err = stack.enter_context(tempfile.TemporaryFile())
        log.debug("+ %s", shlex.join(args))
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=child_in,
                stdout=child_out,
                stderr=err,
                cwd=cwd,
                env=tool_env(env, source_date_epoch=source_date_epoch),
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            package = TOOL_PACKAGES.get(_tool(args))
            hint = f" (install the Debian package {package})" if package else ""
            raise ToolError(_tool(args), f"not found{hint}") from exc
        try:
            captured = await proc.stdout.read() if proc.stdout is not None else b""
            returncode = await proc.wait()
        finally:
            if proc.returncode is None:
                _kill_group(proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    await asyncio.shield(proc.wait())
        stderr = _read_tail(err)
    _check(args, returncode, stderr, check)
    return ToolResult(tuple(args), returncode, captured, stderr)
