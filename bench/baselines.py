"""The unavoidable work inside a build, measured alone over the same bytes.

A build's wall time is set next to the time the external tools need for the same job when run
directly: the ratio says how much the service adds (Python extraction, hashing, fsync, gRPC,
HTTP, scheduling). :class:`Baselines` prepares the inputs untimed — mostly by taking the
service's *output* apart, so the tools see exactly the bytes and trees the service gave them —
and returns :class:`Step` closures that :func:`measure` times (median of ``reps`` runs each).

Recipes, per asset kind (Talos ``VERSION``, ``ARCH`` of :mod:`bench.stack`):

* kernel — ``tar -xzf`` of the imager layer that holds ``vmlinuz`` (copying the input out);
* initramfs — what the imager runs: ``tar -xzf`` of the four extension layers; ``zstd -dc``
  of the base initramfs, ``unsquashfs`` of its module tree and ``depmod`` (an extension ships
  a kernel module); ``mksquashfs`` with the version's flags over each extension tree (the trees
  come back out of the output's ``*.sqsh`` with ``unsquashfs``); the version's compressor
  (``zstd -T0 -18``) over the appended cpio (decompressed from the output);
* UKI — the initramfs steps, plus ``cat`` of stub, kernel and initramfs (the PE is those bytes
  in a row); Secure Boot adds ``sbsign`` with the service's key;
* ISO — UKI steps plus ``xorriso -as mkisofs`` over the ISO's own tree;
* disk image — UKI steps plus ``zstd -T0 -18`` over the raw image (``.raw.zst``) or
  ``qemu-img convert -O qcow2 -o cluster_size=8k`` from it (``.qcow2``); the raw image comes
  from decompressing / converting the output back;
* installer — UKI steps plus ``gzip -6`` over the artifacts layer and ``cp`` of the tarball.

The initramfs of composite kinds is the same flavor's ``initramfs-<arch>.xz`` (identical
content), fetched untimed after the measured build. File systems inside disk images and the
installer's layer bookkeeping have no stand-alone tool to time, so those ratios flatter the
service a little.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from image_service.versions import Version
from services.builder.talos.quirks import Quirks, quirks_for
from services.builder.tools import run
from tests.release import Release

__all__ = ["Baselines", "Part", "Step", "measure"]

_ALIASES = {"siderolabs/amdgpu-firmware": "siderolabs/amdgpu"}  # renamed after Talos 1.7
_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_DEPMOD_CONF = "search extras built-in\n"  # the builder's (and the imager's) depmod config
_GRUB_I386 = Path("/usr/lib/grub/i386-pc")  # Debian's grub-pc-bin


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], object]


@dataclass(frozen=True)
class Part:
    name: str
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "seconds": round(self.seconds, 4)}


def measure(steps: list[Step], reps: int) -> list[Part]:
    """Each step's median wall time over ``reps`` runs."""
    parts = []
    for step in steps:
        times = []
        for _ in range(reps):
            start = time.monotonic()
            step.run()
            times.append(time.monotonic() - start)
        parts.append(Part(step.name, statistics.median(times)))
    return parts


def _tool(
    name: str,
    *argv: str | Path,
    stdin: Path | None = None,
    stdout: Path | None = None,
    out: Path | None = None,
) -> Step:
    """A step running one tool through the builder's own runner (same environment); the
    previous run's output (``stdout``, ``out``) is removed first, so each run writes anew."""

    def go() -> None:
        for path in (stdout, out):
            if path is not None:
                path.unlink(missing_ok=True)
        run(list(argv), stdin=stdin, stdout=stdout)

    return Step(name, go)


def _sparse(path: Path, size: int) -> None:
    """A new, empty (sparse) file of ``size`` bytes at ``path``."""
    path.unlink(missing_ok=True)
    with path.open("wb") as f:
        f.truncate(size)


def _fat_image(name: str, image: Path, size: int, files: list[Path]) -> Step:
    """``mkfs.vfat`` of a ``size``-byte image, then ``mcopy`` of ``files`` into its root."""

    def make() -> None:
        _sparse(image, size)
        run(["mkfs.vfat", "-n", "EFI", "--invariant", image])
        run(["mcopy", "-i", image, *files, "::/"])

    return Step(name, make)


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as f:
        return f.read(len(magic)) == magic


def _decompressor(path: Path) -> str:
    return "xz" if _starts_with(path, _XZ_MAGIC) else "zstd"


class Baselines:
    """Recipes for the stand-alone work of each asset kind; ``scratch`` is private to it."""

    def __init__(
        self,
        release: Release,
        version: str,
        arch: str,
        scratch: Path,
        secureboot_keys: tuple[Path, Path] | None,
    ) -> None:
        self.release = release
        self.talos = release.version(version)
        self.arch = arch
        self.quirks: Quirks = quirks_for(Version.parse(version))
        self.scratch = scratch
        self.keys = secureboot_keys
        self._count = 0

    def _dir(self, name: str) -> Path:
        self._count += 1
        path = self.scratch / f"{self._count:02d}-{name}"
        path.mkdir(parents=True)
        return path

    # -- inputs of the release --------------------------------------------------------------

    def layers(self, repo: str, tag: str) -> list[Path]:
        """The layer blobs of ``siderolabs/<repo>:<tag>`` for the arch, from its OCI layout."""
        for image in self.release.images:
            if image.repo == repo and image.tag == tag:
                blobs = image.layout / "blobs" / "sha256"
                digest = image.manifests[f"linux/{self.arch}"]
                manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_text())
                digests = [layer["digest"] for layer in manifest["layers"]]
                return [blobs / d.removeprefix("sha256:") for d in digests]
        raise RuntimeError(f"the test release has no image {repo}:{tag}")

    def _extension_layers(self, names: tuple[str, ...]) -> list[Path]:
        layers = []
        for name in names:
            ext = self.talos.extension(_ALIASES.get(name, name))
            layers += self.layers(ext.name, ext.tag)
        return layers

    # -- recipes ------------------------------------------------------------------------------

    def kernel(self) -> list[Step]:
        member = f"usr/install/{self.arch}/vmlinuz"
        imager = self.talos.imager
        for layer in self.layers(imager.repo, imager.tag):
            with tarfile.open(layer) as tar:
                if member in tar.getnames():
                    out = self._dir("kernel")
                    vmlinuz = out / member
                    argv = ("tar", "-xzf", layer, "-C", out, member)
                    return [_tool("tar -x vmlinuz", *argv, out=vmlinuz)]
        raise RuntimeError(f"no layer of {imager.repo}:{imager.tag} holds {member}")

    def initramfs(self, output: Path, extensions: tuple[str, ...]) -> list[Step]:
        """Steps for an initramfs ``output`` built with ``extensions`` (see the module doc)."""
        work = self._dir("initramfs")
        artifacts = self.talos.arches[self.arch]
        base = artifacts.initramfs.read_bytes()
        data = output.read_bytes()
        at = data.find(base)
        if at < 0:
            raise RuntimeError(f"{output} does not contain the base initramfs")
        appended = work / "appended"
        appended.write_bytes(data[at + len(base) :])
        del data, base
        cpio = work / "appended.cpio"
        run([_decompressor(appended), "-dc", appended], stdout=cpio)
        tree = work / "cpio"
        tree.mkdir()
        run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], stdin=cpio, cwd=tree)

        steps = []
        layers_dir = work / "layers"
        layers = self._extension_layers(extensions)

        def extract_layers() -> None:
            shutil.rmtree(layers_dir, ignore_errors=True)
            for j, layer in enumerate(layers):
                (layers_dir / str(j)).mkdir(parents=True)
                run(["tar", "-xzf", layer, "-C", layers_dir / str(j)])

        steps.append(Step(f"tar -x {len(layers)} extension layers", extract_layers))
        sqshs = sorted(tree.glob("*.sqsh"))
        if any(p.name == "modules.dep.sqsh" for p in sqshs):
            steps += self._modules(work, artifacts.initramfs, artifacts.rootfs_sqsh)
        squash_args = self.quirks.squashfs_compression_args
        jobs = []
        (work / "trees").mkdir()
        for sqsh in sqshs:
            src = work / "trees" / sqsh.stem
            run(["unsquashfs", "-no-xattrs", "-d", src, sqsh])
            jobs.append((src, work / "out" / sqsh.name))
        (work / "out").mkdir()

        def squash_all() -> None:
            for src, out in jobs:
                out.unlink(missing_ok=True)
                run(["mksquashfs", src, out, "-all-root", "-noappend", "-no-progress",
                     *squash_args, "-no-xattrs"])  # fmt: skip

        steps.append(Step(f"mksquashfs x{len(jobs)} ({' '.join(squash_args[:2])})", squash_all))
        argv = self.quirks.initramfs_compressor_argv
        name = f"{' '.join(argv[:3])} appended cpio"
        steps.append(_tool(name, *argv, stdin=cpio, stdout=work / "appended.out"))
        return steps

    def _modules(self, work: Path, base: Path, rootfs_sqsh: Path) -> list[Step]:
        mod_dir = self.quirks.kernel_modules_path  # "/usr/lib/modules"
        tree = work / "modules"
        conf = work / "depmod.conf"
        conf.write_text(_DEPMOD_CONF)
        kver = self.release.kernel_release[self.arch]
        basedir = tree / mod_dir.strip("/").removesuffix("lib/modules").strip("/")
        decompress = _decompressor(base)

        def unsquash() -> None:
            shutil.rmtree(tree, ignore_errors=True)
            run(["unsquashfs", "-no-xattrs", "-d", tree, "-f", "-n", rootfs_sqsh, mod_dir])

        return [
            _tool(f"{decompress} -dc base", decompress, "-dc", base, stdout=work / "base.cpio"),
            Step("unsquashfs modules", unsquash),
            _tool("depmod", "depmod", "--all", "--basedir", basedir, "--config", conf, kver),
        ]

    def uki(self, initramfs: Path, output: Path | None, *, secureboot: bool) -> list[Step]:
        """``cat`` of the UKI's inputs; with ``secureboot`` also ``sbsign`` of ``output``."""
        work = self._dir("uki")
        artifacts = self.talos.arches[self.arch]
        inputs = (artifacts.systemd_stub, artifacts.vmlinuz, initramfs)
        steps = [_tool("cat stub+kernel+initramfs", "cat", *inputs, stdout=work / "pe")]
        if secureboot:
            if self.keys is None or output is None:
                raise RuntimeError("Secure Boot baseline needs the service's keys and the UKI")
            key, cert = self.keys
            signed = work / "signed"
            argv = ("sbsign", "--key", key, "--cert", cert, "--output", signed, output)
            steps.append(_tool("sbsign", *argv, out=signed))
        return steps

    def iso(self, output: Path) -> list[Step]:
        """The ISO's tree (extracted from it) made into an ISO again: by ``grub-mkrescue
        --compress=xz`` for BIOS when the ISO has GRUB (what grub-mkrescue generated is left
        out, it is made again), else by ``xorriso -as mkisofs``; plus the FAT image of its
        UEFI files (``mkfs.vfat`` + ``mcopy``) when it has a UKI."""
        work = self._dir("iso")
        tree = work / "tree"
        run(["xorriso", "-osirrox", "on", "-indev", output, "-extract", "/", tree])
        run(["chmod", "-R", "u+w", tree])  # extracted read-only
        out = work / "out.iso"
        steps = []
        efi_files = sorted(p for p in (tree / "EFI").rglob("*") if p.is_file())
        if efi_files:
            size = sum(p.stat().st_size for p in efi_files) + (8 << 20)
            steps.append(_fat_image("mkfs.vfat + mcopy efiboot.img", work / "efiboot.img",
                                    size, efi_files))  # fmt: skip
        grub = tree / "boot" / "grub"
        if (grub / "i386-pc").is_dir() and _GRUB_I386.is_dir():
            for generated in ("i386-pc", "roms", "locale", "fonts"):
                shutil.rmtree(grub / generated, ignore_errors=True)
            (tree / "boot.catalog").unlink(missing_ok=True)
            mkrescue = (
                "grub-mkrescue",
                "--compress=xz",
                f"--directory={_GRUB_I386}",
                f"--output={out}",
            )
            steps.append(_tool("grub-mkrescue --compress=xz", *mkrescue, tree, out=out))
        else:
            mkisofs = ("xorriso", "-as", "mkisofs", "-quiet", "-o", out, tree)
            steps.append(_tool("xorriso -as mkisofs", *mkisofs, out=out))
        return steps

    def disk(self, output: Path, initramfs: Path) -> list[Step]:
        """A ``.raw.zst`` or ``.qcow2`` download: its partitions' file systems made again with
        the same tools (EFI: ``mkfs.vfat`` + ``mcopy`` of a UKI-sized file; BOOT:
        ``mkfs.xfs -p`` with kernel and initramfs), the image's data written once
        (``cp --sparse=always``, as assembling the partitions does), then the format's tool
        over the raw image (``zstd -T0 -18``, or ``qemu-img convert -O qcow2``)."""
        work = self._dir("disk")
        raw = work / "disk.raw"
        qcow2 = output.name.endswith(".qcow2")
        if qcow2:
            run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", output, raw])
        else:
            run(["zstd", "-dc", "--sparse", output], stdout=raw)
        steps = self._filesystems(raw, initramfs, work)
        copy = work / "copy.raw"
        steps.append(_tool("cp --sparse=always raw", "cp", "--sparse=always", raw, copy, out=copy))
        out = work / "out"
        if qcow2:
            convert = ("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=8k")
            steps.append(_tool("qemu-img convert qcow2", *convert, raw, out, out=out))
        else:
            zstd = ("zstd", "-T0", "-18", "--quiet", "--force", "-o", out, raw)
            steps.append(_tool("zstd -T0 -18 raw", *zstd, out=out))
        return steps

    def _filesystems(self, raw: Path, initramfs: Path, work: Path) -> list[Step]:
        table = json.loads(run(["sfdisk", "--json", raw]).stdout)["partitiontable"]
        sector = int(table.get("sectorsize", 512))
        sizes = {p.get("name"): int(p["size"]) * sector for p in table["partitions"]}
        artifacts = self.talos.arches[self.arch]
        uki = work / "uki.efi"
        run(["cat", artifacts.systemd_stub, artifacts.vmlinuz, initramfs], stdout=uki)
        proto = work / "boot.proto"
        proto.write_text(
            "/dev/null\n0 0\nd--755 0 0\nA d--755 0 0\n"
            f"vmlinuz ---644 0 0 {artifacts.vmlinuz}\ninitramfs.xz ---644 0 0 {initramfs}\n$\n$\n"
        )
        steps = []
        if "EFI" in sizes:
            steps.append(_fat_image("mkfs.vfat + mcopy EFI", work / "efi.img", sizes["EFI"], [uki]))
        if "BOOT" in sizes:
            boot = work / "boot.img"

            def make_boot() -> None:
                _sparse(boot, sizes["BOOT"])
                run(["mkfs.xfs", "-q", "-f", "-L", "BOOT", "-p", proto, boot])

            steps.append(Step("mkfs.xfs -p BOOT", make_boot))
        return steps

    def installer(self, output: Path) -> list[Step]:
        """``cp`` of the whole tarball; ``gzip -6`` over its artifacts layer (the last one its
        docker-save ``manifest.json`` lists), when that layer is gzip-compressed."""
        work = self._dir("installer")
        layer = work / "layer.gz"
        with tarfile.open(output) as tar:
            manifest = tar.extractfile("manifest.json")
            last = json.load(manifest)[0]["Layers"][-1] if manifest is not None else None
            src = tar.extractfile(last) if last is not None else None
            if src is not None:
                with src, layer.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        copy = work / "copy.tar"
        steps = [_tool("cp installer tarball", "cp", output, copy, out=copy)]
        if layer.exists() and _starts_with(layer, _GZIP_MAGIC):
            plain = work / "layer.tar"
            run(["gzip", "-dc", layer], stdout=plain)
            gzip = ("gzip", "-6", "-n", "-c", plain)
            steps.append(_tool("gzip -6 artifacts layer", *gzip, stdout=work / "re.gz"))
        return steps
