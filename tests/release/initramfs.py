"""Build the base ``initramfs.xz`` and ``rootfs.sqsh`` of a test release, and the cpio/squashfs
helpers tests use to make extension sections by hand.

Design (why the base cpio has a ``fixture/`` directory): upstream's base cpio holds only ``init``
(machined, a static Go binary) and ``rootfs.sqsh``. Our ``init`` is the busybox shell script
``init.sh``; a script needs its interpreter in the cpio (``fixture/busybox``, named in the
shebang), and mounting ``rootfs.sqsh`` needs the ``loop`` and ``squashfs`` modules first, which
are modules (not built in) in the Debian kernel, so they sit beside it
(``fixture/modules/*.ko``). Everything else lives in ``rootfs.sqsh`` like upstream: os-release
and a real module tree (``<mod>/<kver>/kernel/…`` + ``modules.*`` made by depmod) whose
``overlay``/``efivarfs`` modules the init loads after mounting it. The product only ever copies
the base stream and reads ``rootfs.sqsh`` out of it, so the extra members do not change what it
has to do.

Reproducibility: every mtime is set to ``SOURCE_DATE_EPOCH`` before archiving, cpio gets a
sorted list with ``--reproducible -R +0:+0``, mksquashfs runs with ``SOURCE_DATE_EPOCH`` and
``-all-root``; xz and zstd output does not depend on the thread count.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.release.inputs import ArchInputs
from tests.release.spec import (
    FIXTURE_MODULES,
    SOURCE_DATE_EPOCH,
    Compression,
    VersionSpec,
)
from tests.release.tools import run

__all__ = [
    "INIT_SCRIPT",
    "build_base_initramfs",
    "build_rootfs",
    "compress",
    "make_cpio",
    "make_extension_section",
    "make_microcode_cpio",
    "make_squashfs",
    "normalise_mtimes",
    "tree_members",
]

INIT_SCRIPT = Path(__file__).with_name("init.sh")

_COMPRESSORS: dict[Compression, list[str]] = {
    # talos-assets.md §3.1 (base) / §4.4 (appended sections): the same flags.
    Compression.XZ: ["xz", "-C", "crc32", "-0", "-e", "-T0", "-z", "-c"],
    Compression.ZSTD: ["zstd", "-c", "-T0", "-18", "-q"],
}
_SQUASHFS: dict[Compression, list[str]] = {
    Compression.XZ: ["-comp", "xz", "-Xdict-size", "100%"],
    Compression.ZSTD: ["-comp", "zstd", "-Xcompression-level", "18"],
}


def normalise_mtimes(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.utime(
                Path(dirpath) / name, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False
            )
    os.utime(root, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))


def tree_members(root: Path) -> list[str]:
    """Every path under ``root``, relative, sorted bytewise (``LC_ALL=C sort``)."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        out.extend(str(rel / n) for n in [*dirnames, *filenames])
    return sorted(out, key=os.fsencode)


def make_cpio(root: Path, out: Path, members: Sequence[str] | None = None) -> list[str]:
    """Write an uncompressed newc cpio of ``root`` (or of ``members`` in the given order)."""
    normalise_mtimes(root)
    names = list(members) if members is not None else tree_members(root)
    run(
        ["cpio", "-o", "-H", "newc", "--reproducible", "-R", "+0:+0", "--quiet"],
        cwd=root,
        input=("\n".join(names) + "\n").encode(),
        stdout=out,
    )
    return names


def compress(src: Path, out: Path, compression: Compression) -> None:
    run([*_COMPRESSORS[compression], src], stdout=out)


def make_squashfs(src: Path, out: Path, compression: Compression) -> None:
    normalise_mtimes(src)
    out.unlink(missing_ok=True)
    run(
        [
            "mksquashfs", src, out, "-all-root", "-noappend", "-no-progress", "-quiet",
            "-no-xattrs", *_SQUASHFS[compression],
        ]
    )  # fmt: skip


def build_rootfs(dest: Path, version: VersionSpec, ai: ArchInputs) -> None:
    """The tree that becomes rootfs.sqsh: os-release and a depmod'ed module subset."""
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "usr/lib").mkdir(parents=True)
    (dest / "usr/lib/os-release").write_text(
        'NAME="Talos"\n'
        "ID=talos\n"
        f"VERSION_ID={version.version}\n"
        f'PRETTY_NAME="Talos ({version.version})"\n'
        'HOME_URL="https://www.talos.dev/"\n'
        "VARIANT=test-release-fixture\n"
    )
    (dest / "etc").mkdir()
    (dest / "etc/os-release").symlink_to("../usr/lib/os-release")
    (dest / version.firmware_dir).mkdir(parents=True, exist_ok=True)
    moddir = dest / version.modules_dir / ai.kernel_release
    for rel in ai.module_files:
        target = moddir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ai.modules / rel, target)
    for name in ("modules.builtin", "modules.builtin.modinfo"):
        shutil.copyfile(ai.modules / name, moddir / name)
    kept = set(ai.module_files)
    order = [ln for ln in (ai.modules / "modules.order").read_text().splitlines() if ln in kept]
    (moddir / "modules.order").write_text("".join(f"{ln}\n" for ln in order))
    confdir = dest.parent / f"{dest.name}.depmod.d"
    confdir.mkdir(exist_ok=True)
    base = dest / version.modules_dir.removesuffix("lib/modules").rstrip("/")
    run(["depmod", "-b", base, "-C", confdir, ai.kernel_release])
    shutil.rmtree(confdir)


def build_base_initramfs(work: Path, version: VersionSpec, ai: ArchInputs) -> tuple[Path, Path]:
    """Build ``initramfs.xz`` (really zstd from 1.8) and ``rootfs.sqsh`` under ``work``."""
    rootfs_tree = work / "rootfs"
    build_rootfs(rootfs_tree, version, ai)
    sqsh = work / "rootfs.sqsh"
    make_squashfs(rootfs_tree, sqsh, version.squashfs_compression)
    shutil.rmtree(rootfs_tree)

    tree = work / "initramfs"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "fixture/modules").mkdir(parents=True)
    shutil.copyfile(INIT_SCRIPT, tree / "init")
    (tree / "init").chmod(0o755)
    shutil.copyfile(ai.busybox, tree / "fixture/busybox")
    (tree / "fixture/busybox").chmod(0o755)
    for name in FIXTURE_MODULES:
        found = [p for p in ai.module_files if p.endswith(f"/{name}")]
        shutil.copyfile(ai.modules / found[0], tree / "fixture/modules" / name)
    shutil.copyfile(sqsh, tree / "rootfs.sqsh")
    cpio = work / "initramfs.cpio"
    make_cpio(tree, cpio)
    shutil.rmtree(tree)
    out = work / "initramfs.xz"
    compress(cpio, out, version.initramfs_compression)
    cpio.unlink()
    return out, sqsh


# --- hand-made extension sections (what the product appends, talos-assets.md §4) -------------


def make_extension_section(
    work: Path,
    layers: Sequence[tuple[str, str, Path]],
    *,
    compression: Compression,
    squashfs_compression: Compression,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """A compressed cpio with ``extensions.yaml``, ``<i>.sqsh`` per ``(name, version, rootfs
    dir)`` and ``extra_files`` (e.g. firmware), to append to a base initramfs."""
    tree = work / "section"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    doc: dict[str, Any] = {"layers": []}
    for i, (name, version, rootfs) in enumerate(layers):
        make_squashfs(rootfs, tree / f"{i}.sqsh", squashfs_compression)
        doc["layers"].append(
            {
                "image": f"{i}.sqsh",
                "metadata": {
                    "name": name,
                    "version": version,
                    "author": "tests",
                    "description": f"hand-made layer {i}\n",
                    "compatibility": {"talos": {"version": ">= 1.0.0"}},
                },
            }
        )
    (tree / "extensions.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for rel, data in (extra_files or {}).items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    cpio = work / "section.cpio"
    make_cpio(tree, cpio)
    out = work / f"section.cpio.{compression.value}"
    compress(cpio, out, compression)
    cpio.unlink()
    return out


def make_microcode_cpio(work: Path, files: Mapping[str, bytes]) -> Path:
    """The uncompressed early cpio: ``kernel/x86/microcode/<name>`` per entry of ``files``."""
    tree = work / "microcode"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "kernel/x86/microcode").mkdir(parents=True)
    for name, data in files.items():
        (tree / "kernel/x86/microcode" / name).write_bytes(data)
    out = work / "microcode.cpio"
    make_cpio(tree, out)
    return out
