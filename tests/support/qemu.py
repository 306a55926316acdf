"""Boot things in QEMU (TCG) and hand back the serial log.

One helper for every boot test: direct kernel boots, ISOs, UKIs, disk images, iPXE. A boot's
verdict is the marker lines in its serial log, never QEMU's exit code: with ``-no-reboot`` and
``panic=-1`` a kernel panic ends QEMU with status 0, exactly like a clean poweroff
(verification.md §0). So :func:`boot` returns the log and the caller asserts on it.

Firmware: ``BIOS`` is SeaBIOS (x86 only; on arm64 it means "no firmware", i.e. a direct boot),
``UEFI`` is OVMF (q35) or AAVMF (virt) from pflash with a fresh copy of the VARS template per
boot (a reused VARS file keeps stale Boot#### entries, verification.md §4), and
``UEFI_SECUREBOOT`` is the snakeoil-enrolled OVMF with SMM and Secure Boot enforced (x86 only);
``vars_template`` replaces the VARS template, e.g. with keys a test enrolled itself.

KVM is not used: it hangs on these machines (verification.md §0).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "BootResult",
    "Firmware",
    "FirmwareFiles",
    "boot",
    "cd_args",
    "firmware_files",
    "qemu_argv",
]


class Firmware(StrEnum):
    BIOS = "bios"
    UEFI = "uefi"
    UEFI_SECUREBOOT = "uefi-secureboot"


@dataclass(frozen=True)
class FirmwareFiles:
    code: Path
    vars_template: Path


_FIRMWARE: dict[tuple[str, Firmware], FirmwareFiles] = {
    ("amd64", Firmware.UEFI): FirmwareFiles(
        Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
    ),
    ("amd64", Firmware.UEFI_SECUREBOOT): FirmwareFiles(
        Path("/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd"),
        Path("/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"),
    ),
    ("arm64", Firmware.UEFI): FirmwareFiles(
        Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd")
    ),
    ("arm64", Firmware.UEFI_SECUREBOOT): FirmwareFiles(
        Path("/usr/share/AAVMF/AAVMF_CODE.snakeoil.fd"),
        Path("/usr/share/AAVMF/AAVMF_VARS.snakeoil.fd"),
    ),
}

_ARCH_ALIASES = {"amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "aarch64": "arm64"}


def firmware_files(arch: str, firmware: Firmware) -> FirmwareFiles:
    """The pflash code and VARS template for ``arch`` (``amd64``/``arm64``) and ``firmware``."""
    try:
        return _FIRMWARE[(_ARCH_ALIASES[arch], firmware)]
    except KeyError:
        raise ValueError(f"no {firmware} firmware for {arch}") from None


@dataclass(frozen=True)
class BootResult:
    log: str  # serial output, \r removed
    log_path: Path
    argv: tuple[str, ...]
    elapsed: float
    timed_out: bool
    stopped_on: str | None  # the stop pattern that ended the boot early, if any
    returncode: int | None  # informational only: never a verdict
    stderr: str  # QEMU's own messages

    def lines(self, prefix: str) -> list[str]:
        """Serial lines containing ``prefix``, each cut to start at it."""
        out = []
        for line in self.log.splitlines():
            i = line.find(prefix)
            if i >= 0:
                out.append(line[i:].rstrip())
        return out

    def describe(self) -> str:
        """A short text for assertion messages: how it ended and the log's tail."""
        how = "timed out" if self.timed_out else f"stopped on {self.stopped_on!r}"
        if not self.timed_out and self.stopped_on is None:
            how = f"exited ({self.returncode})"
        tail = "\n".join(self.log.splitlines()[-40:])
        return (
            f"{how} after {self.elapsed:.1f}s; qemu: {' '.join(self.argv)}\n"
            f"--- qemu stderr ---\n{self.stderr[-2000:]}\n--- serial tail ---\n{tail}"
        )


def qemu_argv(
    arch: str,
    workdir: Path,
    *,
    log_path: Path,
    kernel: Path | None = None,
    initrd: Path | None = None,
    append: str | None = None,
    firmware: Firmware = Firmware.BIOS,
    vars_template: Path | None = None,
    machine: str | None = None,
    cpu: str | None = None,
    memory_mib: int = 512,
    smp: int = 1,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The QEMU command line for one boot (copies the VARS file into ``workdir``)."""
    arch = _ARCH_ALIASES[arch]
    if arch == "amd64":
        binary = "qemu-system-x86_64"
        default_machine = "pc" if firmware is Firmware.BIOS else "q35"
        if firmware is Firmware.UEFI_SECUREBOOT:
            default_machine = "q35,smm=on"
    else:
        binary = "qemu-system-aarch64"
        default_machine = "virt"
        cpu = cpu or "cortex-a57"
    argv = [
        binary, "-accel", "tcg", "-machine", machine or default_machine, "-m", str(memory_mib),
        "-smp", str(smp), "-nographic", "-no-reboot", "-display", "none", "-monitor", "none",
        "-serial", f"file:{log_path}",
    ]  # fmt: skip
    if cpu:
        argv += ["-cpu", cpu]
    if firmware is not Firmware.BIOS:
        fw = firmware_files(arch, firmware)
        vars_copy = workdir / f"{log_path.stem}-vars.fd"
        shutil.copyfile(vars_template or fw.vars_template, vars_copy)
        if firmware is Firmware.UEFI_SECUREBOOT and arch == "amd64":
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        argv += [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={fw.code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
        ]  # fmt: skip
    if kernel is not None:
        argv += ["-kernel", str(kernel)]
    if initrd is not None:
        argv += ["-initrd", str(initrd)]
    if append is not None:
        argv += ["-append", append]
    argv += list(extra_args)
    return argv


def _concat(parts: Sequence[Path], out: Path) -> Path:
    with out.open("wb") as dst:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, dst)
    return out


def boot(
    arch: str,
    workdir: Path,
    *,
    kernel: Path | None = None,
    initrd: Path | Sequence[Path] | None = None,
    append: str | None = None,
    firmware: Firmware = Firmware.BIOS,
    vars_template: Path | None = None,
    machine: str | None = None,
    cpu: str | None = None,
    memory_mib: int = 512,
    smp: int = 1,
    extra_args: Sequence[str] = (),
    timeout: float = 180.0,
    stop_on: Sequence[str] = (),
    name: str = "boot",
) -> BootResult:
    """Run one QEMU boot until it powers off, ``timeout`` passes, or a ``stop_on`` regex shows
    up in the serial log (e.g. ``"FIXTURE-DONE"``, ``"Kernel panic"``, ``"Access Denied"``).

    ``initrd`` may be several files: they are concatenated like a boot loader would. The serial
    log is ``workdir/<name>.log``; ``extra_args`` are appended verbatim (drives, -cdrom, -netdev,
    -boot …).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    log_path.unlink(missing_ok=True)
    if initrd is not None and not isinstance(initrd, Path):
        initrd = _concat(list(initrd), workdir / f"{name}-initrd.img")
    argv = qemu_argv(
        arch,
        workdir,
        log_path=log_path,
        kernel=kernel,
        initrd=initrd,
        append=append,
        firmware=firmware,
        vars_template=vars_template,
        machine=machine,
        cpu=cpu,
        memory_mib=memory_mib,
        smp=smp,
        extra_args=extra_args,
    )
    patterns = [re.compile(p) for p in stop_on]
    stderr_path = workdir / f"{name}.qemu-stderr"
    start = time.monotonic()
    timed_out = False
    stopped_on: str | None = None
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            start_new_session=True,
        )
        try:
            while proc.poll() is None:
                if time.monotonic() - start > timeout:
                    timed_out = True
                    break
                if patterns and log_path.exists():
                    text = log_path.read_text(errors="replace")
                    hit = next((p.pattern for p in patterns if p.search(text)), None)
                    if hit is not None:
                        stopped_on = hit
                        break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    elapsed = time.monotonic() - start
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    return BootResult(
        log=log.replace("\r", ""),
        log_path=log_path,
        argv=tuple(argv),
        elapsed=elapsed,
        timed_out=timed_out,
        stopped_on=stopped_on,
        returncode=proc.returncode,
        stderr=stderr_path.read_text(errors="replace"),
    )


def cd_args(arch: str, iso: Path) -> list[str]:
    """QEMU arguments attaching ``iso`` as a CD-ROM (IDE on x86, virtio-scsi on arm64 virt)."""
    if arch == "amd64":
        return ["-cdrom", str(iso)]
    return [
        "-drive", f"file={iso},if=none,id=cd,format=raw,readonly=on,media=cdrom",
        "-device", "virtio-scsi-pci,id=scsi", "-device", "scsi-cd,drive=cd",
    ]  # fmt: skip
