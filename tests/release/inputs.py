"""The real binaries the test release is made of, taken from Debian packages.

Per arch: the bookworm kernel (``vmlinuz``, its config and a few uncompressed ``.ko`` modules
with the ``modules.*`` lists), static busybox, and systemd-boot/systemd-stub from bookworm
(systemd 252) and trixie (systemd 257). Each package is unpacked once into
``<downloads>/unpacked/<deb file name>/`` (only the files needed), so rebuilding the release
neither downloads nor unpacks again.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.release.debs import DebCache, extract_deb
from tests.release.spec import (
    ARCHES,
    EXTENSION_MODULE,
    KERNEL_SUITE,
    ROOTFS_MODULES,
    Arch,
)
from tests.release.tools import ToolError

__all__ = ["ArchInputs", "Inputs", "fetch_inputs"]

_EFI_NAMES = {Arch.AMD64: "x64", Arch.ARM64: "aa64"}
_MODULE_LISTS = ("modules.builtin", "modules.builtin.modinfo", "modules.order")
# Modules the rootfs modules need (isofs -> cdrom); resolved via modinfo at build time would
# need kmod's modinfo on every host, so the (tiny, stable) closure is listed here.
_MODULE_DEPS = ("kernel/drivers/cdrom/cdrom.ko", "kernel/fs/efivarfs/efivarfs.ko")


@dataclass(frozen=True)
class ArchInputs:
    arch: Arch
    kernel_release: str  # e.g. 6.1.0-50-amd64
    kernel_package: str  # e.g. linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb
    vmlinuz: Path
    kernel_config: Path
    modules: Path  # lib/modules/<kver> (subset of real modules + modules.* lists)
    busybox: Path
    systemd_boot: dict[str, Path]  # suite -> systemd-boot<x64|aa64>.efi
    systemd_stub: dict[str, Path]  # suite -> linux<x64|aa64>.efi.stub

    @property
    def module_files(self) -> tuple[str, ...]:
        return (*ROOTFS_MODULES, *_MODULE_DEPS)


@dataclass(frozen=True)
class Inputs:
    arches: dict[Arch, ArchInputs]
    debs: tuple[str, ...]  # "<file name> <sha256>" of every package used (part of the build key)


def _unpack(
    cache: DebCache, used: list[str], suite: str, package: str, arch: Arch, select: re.Pattern[str]
) -> Path:
    deb, path = cache.get(suite, package, arch.value)
    used.append(f"{suite}/{deb.filename} {deb.sha256}")
    dest = cache.root / "unpacked" / deb.filename
    done = dest / ".complete"
    if not done.exists():
        shutil.rmtree(dest, ignore_errors=True)
        files = extract_deb(path, dest, lambda name: select.search(name) is not None)
        if not files:
            raise ToolError(f"{deb.filename} holds nothing matching {select.pattern}")
        done.write_text(deb.sha256 + "\n")
    return dest


def fetch_inputs(downloads: Path, efi_suites: tuple[str, ...]) -> Inputs:
    """Download (once) and unpack (once) everything, for every arch."""
    cache = DebCache(downloads)
    wanted_modules = "|".join(
        re.escape(m) for m in (*ROOTFS_MODULES, *_MODULE_DEPS, EXTENSION_MODULE, *_MODULE_LISTS)
    )
    kernel_re = re.compile(
        rf"^(boot/(vmlinuz|config)-.*|(usr/)?lib/modules/[^/]+/({wanted_modules}))$"
    )
    arches: dict[Arch, ArchInputs] = {}
    used: list[str] = []
    for arch in ARCHES:
        kdir = _unpack(cache, used, KERNEL_SUITE, f"linux-image-{arch}", arch, kernel_re)
        vmlinuz = sorted((kdir / "boot").glob("vmlinuz-*"))
        if len(vmlinuz) != 1:
            raise ToolError(f"expected one vmlinuz in {kdir}/boot, found {vmlinuz}")
        kver = vmlinuz[0].name.removeprefix("vmlinuz-")
        moddir = next(
            (
                p
                for p in (kdir / "lib/modules" / kver, kdir / "usr/lib/modules" / kver)
                if p.is_dir()
            ),
            None,
        )
        if moddir is None:
            raise ToolError(f"no module tree for {kver} in {kdir}")
        bdir = _unpack(
            cache, used, KERNEL_SUITE, "busybox-static", arch, re.compile(r"^(usr/)?bin/busybox$")
        )
        busybox = next(p for p in (bdir / "bin/busybox", bdir / "usr/bin/busybox") if p.exists())
        boot: dict[str, Path] = {}
        stub: dict[str, Path] = {}
        efi = _EFI_NAMES[arch]
        for suite in efi_suites:
            sdir = _unpack(
                cache,
                used,
                suite,
                "systemd-boot-efi",
                arch,
                re.compile(
                    rf"^usr/lib/systemd/boot/efi/(systemd-boot{efi}\.efi|linux{efi}\.efi\.stub)$"
                ),
            )
            boot[suite] = sdir / f"usr/lib/systemd/boot/efi/systemd-boot{efi}.efi"
            stub[suite] = sdir / f"usr/lib/systemd/boot/efi/linux{efi}.efi.stub"
        arches[arch] = ArchInputs(
            arch=arch,
            kernel_release=kver,
            kernel_package=kdir.name,
            vmlinuz=vmlinuz[0],
            kernel_config=kdir / "boot" / f"config-{kver}",
            modules=moddir,
            busybox=busybox,
            systemd_boot=boot,
            systemd_stub=stub,
        )
    return Inputs(arches=arches, debs=tuple(sorted(used)))
