"""Read the FIXTURE-* marker lines the test-release init prints (format: ``init.sh`` header).

``parse_markers(serial_log)`` turns a boot's serial log into a :class:`FixtureReport`, so boot
tests assert on fields (``report.extensions``, ``report.schematics``…) instead of grepping.
Kernel messages may share the serial line, so each marker is taken from where ``FIXTURE-``
starts on its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ExtensionLayer", "FixtureReport", "parse_markers"]


@dataclass(frozen=True)
class ExtensionLayer:
    name: str
    version: str
    image: str
    files: int


@dataclass
class FixtureReport:
    lines: list[str] = field(default_factory=list)  # every marker line, in order
    boot_ok: bool = False
    cmdline: str | None = None
    firmware: str | None = None  # "UEFI" | "BIOS"
    kernel: str | None = None  # "<uname -r> <uname -m>"
    microcode: tuple[str, ...] | None = None  # () when absent, else ("GenuineIntel.bin:123", …)
    firmware_files: list[str] = field(default_factory=list)
    rootfs: str | None = None  # VERSION_ID of rootfs.sqsh, or "failed"
    kmods: dict[str, str] = field(default_factory=dict)  # module -> "loaded" | "failed"
    secureboot: str | None = None
    lockdown: str | None = None
    extensions: list[ExtensionLayer] = field(default_factory=list)
    extension_failures: list[str] = field(default_factory=list)
    extension_count: int | None = None  # None when /extensions.yaml was absent
    schematics: list[str] = field(default_factory=list)
    depmod: list[str] = field(default_factory=list)
    overlay: str | None = None  # "ok <lowerdirs>" | "failed"
    done: bool = False

    def count(self, marker: str) -> int:
        """How often a marker keyword (e.g. ``FIXTURE-BOOT-OK``) appeared."""
        return sum(1 for ln in self.lines if ln.split(" ", 1)[0] == marker)


def parse_markers(log: str) -> FixtureReport:
    r = FixtureReport()
    for raw in log.replace("\r", "").splitlines():
        i = raw.find("FIXTURE-")
        if i < 0:
            continue
        line = raw[i:].rstrip()
        r.lines.append(line)
        key, _, rest = line.partition(" ")
        if key == "FIXTURE-BOOT-OK":
            r.boot_ok = True
        elif key == "FIXTURE-CMDLINE":
            r.cmdline = rest
        elif key == "FIXTURE-FIRMWARE":
            r.firmware = rest
        elif key == "FIXTURE-KERNEL":
            r.kernel = rest
        elif key == "FIXTURE-MICROCODE":
            words = rest.split()
            r.microcode = tuple(words[1:]) if words[:1] == ["present"] else ()
        elif key == "FIXTURE-FWFILE":
            r.firmware_files.append(rest)
        elif key == "FIXTURE-ROOTFS":
            r.rootfs = rest
        elif key == "FIXTURE-KMOD":
            name, status, *_ = [*rest.split(), "", ""]
            r.kmods[name] = status
        elif key == "FIXTURE-SECUREBOOT":
            r.secureboot = rest
        elif key == "FIXTURE-LOCKDOWN":
            r.lockdown = rest
        elif key == "FIXTURE-EXT":
            name, version, image, files = [*rest.split(), "", "", "", ""][:4]
            r.extensions.append(
                ExtensionLayer(
                    name,
                    version,
                    image.removeprefix("image="),
                    int(files.removeprefix("files=") or -1),
                )
            )
        elif key == "FIXTURE-EXT-FAIL":
            r.extension_failures.append(rest)
        elif key == "FIXTURE-EXTENSIONS":
            r.extension_count = None if rest == "none" else int(rest)
        elif key == "FIXTURE-SCHEMATIC":
            r.schematics.append(rest)
        elif key == "FIXTURE-DEPMOD":
            r.depmod.append(rest)
        elif key == "FIXTURE-OVERLAY":
            r.overlay = rest
        elif key == "FIXTURE-DONE":
            r.done = True
    return r
