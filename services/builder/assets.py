"""Assemblers: turn resolved inputs into one output file in a private work directory.

``Assembler.assemble(inputs, work)`` dispatches on the asset kind. Inputs arrive pinned by digest
(``AssetInputs``); blobs come through the release client's content-addressed cache, so each
input is downloaded once. Nothing here decides *what* to build — that is the pipeline's plan —
and nothing here touches the asset store: the scheduler commits the returned file.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

from image_service.imagefs import LayerFormatError, copy_layer_files
from image_service.oci import RegistryClient, RegistryError
from image_service.versions import Version
from services.builder.errors import BuildFailed, InvalidProfile
from services.builder.formats.disk import DiskInputs, build_disk_image
from services.builder.formats.initramfs import (
    ExtensionLayers,
    InitramfsOptions,
    build_initramfs,
    embedded_config_extension,
    schematic_extension,
)
from services.builder.formats.installer import (
    BootFiles,
    InstallerInputs,
    OverlayFiles,
    build_installer,
    fetch_installer_base,
    uses_uki,
)
from services.builder.formats.iso import EnrollKeys, IsoInputs, IsoKind, IsoSecureBoot, build_iso
from services.builder.formats.uki import build_uki, kernel_version, talos_os_release, uki_profiles
from services.builder.inputs.extract import extract_layers
from services.builder.talos.paths import AssetKind, AssetRequest
from services.builder.talos.quirks import Bootloader, Quirks
from services.builder.talos.secureboot import (
    EnrollmentFiles,
    PcrSigner,
    SecureBootKeys,
    enrollment_files,
    sign_efi,
)

__all__ = ["Assembler", "AssetInputs", "ExtensionInput"]

IMAGER_REPO = "siderolabs/imager"


@dataclass(frozen=True)
class ExtensionInput:
    name: str  # catalogue name, e.g. "siderolabs/gvisor"
    repository: str
    manifest_digest: str  # the target arch's image manifest


@dataclass(frozen=True)
class OverlayInput:
    name: str  # the overlay's catalogue name, e.g. "rpi_generic"
    repository: str  # e.g. "siderolabs/sbc-raspberrypi"
    manifest_digest: str  # the target arch's image manifest
    options: str  # YAML of the flavor's overlay options ("" when none)


@dataclass(frozen=True)
class AssetInputs:
    request: AssetRequest
    version: Version
    quirks: Quirks
    imager_digest: str
    extensions: tuple[ExtensionInput, ...]
    flavor_id: str
    canonical_flavor: bytes
    cmdline: str
    meta: tuple[tuple[int, str], ...]
    external_url: str
    embedded_config: str = ""
    installer_base_digest: str = ""  # the target arch's manifest of the installer base
    bootloader: str = ""  # disk images and ISOs: the selected bootloader
    enroll_keys: str = "if-safe"  # sd-boot secure-boot-enroll mode (Secure Boot)
    sector_size: int = 512  # disk images
    overlay: OverlayInput | None = None  # installers of flavors with an overlay


class Assembler:
    def __init__(
        self,
        release: RegistryClient,
        *,
        keys: SecureBootKeys | None = None,
        pcr: PcrSigner | None = None,
    ) -> None:
        self._release = release
        self._keys = keys
        self._pcr = pcr

    async def assemble(self, inputs: AssetInputs, work: Path) -> Path:
        match inputs.request.kind:
            case AssetKind.KERNEL:
                return await self._kernel(inputs, work)
            case AssetKind.CMDLINE:
                return await asyncio.to_thread(self._cmdline, inputs, work)
            case AssetKind.INITRAMFS:
                return await self.initramfs(inputs, work)
            case AssetKind.UKI:
                return await self.uki(inputs, work, output="uki")
            case AssetKind.INSTALLER:
                return await self.installer(inputs, work)
            case AssetKind.IMAGE:
                return await self.disk_image(inputs, work)
            case AssetKind.ISO:
                return await self.iso(inputs, work)
            case kind:
                raise BuildFailed(f"no assembler for {kind}")

    async def _layers(self, repo: str, digest: str) -> list[Path]:
        try:
            fetched = await self._release.get_manifest(repo, digest)
            return [
                await self._release.fetch_blob(repo, layer.digest, size=layer.size)
                for layer in fetched.document.layers
            ]
        except RegistryError as exc:
            raise BuildFailed(f"cannot fetch {repo}@{digest}: {exc}") from exc

    async def boot_files(
        self, inputs: AssetInputs, work: Path, names: tuple[str, ...]
    ) -> dict[str, Path]:
        """Copy ``usr/install/<arch>/<name>`` files out of the imager image into ``work``
        (once per build: files already copied by an earlier step are reused)."""
        arch = inputs.request.arch
        paths = {name: work / f"input-{name}" for name in names}
        wanted = {
            f"usr/install/{arch}/{name}": path for name, path in paths.items() if not path.exists()
        }
        if not wanted:
            return paths
        layers = await self._layers(IMAGER_REPO, inputs.imager_digest)
        try:
            found = await asyncio.to_thread(copy_layer_files, layers, wanted)
        except LayerFormatError as exc:
            raise BuildFailed(f"imager {inputs.version.tag}: {exc}") from exc
        missing = sorted(set(wanted) - found)
        if missing:
            raise BuildFailed(f"imager {inputs.version.tag} lacks {', '.join(missing)}")
        return paths

    async def _kernel(self, inputs: AssetInputs, work: Path) -> Path:
        files = await self.boot_files(inputs, work, ("vmlinuz",))
        return files["vmlinuz"]

    def _cmdline(self, inputs: AssetInputs, work: Path) -> Path:
        out = work / "cmdline"
        out.write_text(inputs.cmdline)
        return out

    def signing(self, inputs: AssetInputs) -> tuple[SecureBootKeys | None, PcrSigner | None]:
        """The keys for a Secure Boot asset; ``(None, None)`` otherwise."""
        if not inputs.request.secureboot:
            return None, None
        if self._keys is None or self._pcr is None:
            raise BuildFailed("a Secure Boot asset was planned without Secure Boot keys")
        return self._keys, self._pcr

    async def systemd_boot(self, inputs: AssetInputs, work: Path) -> Path:
        """The release's systemd-boot, signed with the service's key for Secure Boot."""
        plain = (await self.boot_files(inputs, work, ("systemd-boot.efi",)))["systemd-boot.efi"]
        keys, _ = self.signing(inputs)
        if keys is None:
            return plain
        signed = work / "systemd-boot.signed.efi"
        await asyncio.to_thread(sign_efi, plain, keys, signed)
        return signed

    async def installer(self, inputs: AssetInputs, work: Path) -> Path:
        """The installer image for one arch as a docker-archive (talos-assets.md §12)."""
        request = inputs.request
        arch = str(request.arch)
        base = await fetch_installer_base(
            self._release, inputs.quirks, inputs.version, arch, inputs.installer_base_digest
        )
        if uses_uki(inputs.quirks, request.secureboot):
            boot = BootFiles(
                systemd_boot=await self.systemd_boot(inputs, work),
                uki=await self.uki(inputs, work, output="installer"),
            )
        else:
            kernel = (await self.boot_files(inputs, work, ("vmlinuz",)))["vmlinuz"]
            boot = BootFiles(kernel=kernel, initramfs=await self.initramfs(inputs, work))
        out = work / "installer.tar"
        installer_inputs = InstallerInputs(
            version=inputs.version,
            arch=arch,
            quirks=inputs.quirks,
            secureboot=request.secureboot,
            base=base,
            boot=boot,
            overlay=await self.overlay_files(inputs.overlay, work) if inputs.overlay else None,
        )
        cancel = threading.Event()
        try:
            await asyncio.to_thread(
                build_installer, installer_inputs, work / "installer", out, cancel=cancel
            )
        except asyncio.CancelledError:
            cancel.set()
            raise
        return out

    async def enrollment(self, inputs: AssetInputs, work: Path) -> EnrollmentFiles | None:
        """PK/KEK/db auto-enrolment files for Secure Boot media (talos-assets.md §13)."""
        keys, _ = self.signing(inputs)
        if keys is None:
            return None
        return await asyncio.to_thread(enrollment_files, keys, work / "enroll")

    async def disk_image(self, inputs: AssetInputs, work: Path) -> Path:
        """A disk image in the requested format and compression (talos-assets.md §9, §10)."""
        request = inputs.request
        bootloader = Bootloader(inputs.bootloader)
        kernel = (await self.boot_files(inputs, work, ("vmlinuz",)))["vmlinuz"]
        initramfs = await self.initramfs(inputs, work)
        uki = systemd_boot = None
        if bootloader is not Bootloader.GRUB:
            uki = await self.uki(inputs, work, output="image")
            systemd_boot = await self.systemd_boot(inputs, work)
        assert request.disk_format is not None
        disk = DiskInputs(
            version=inputs.version,
            arch=request.arch,
            platform=request.platform,
            quirks=inputs.quirks,
            bootloader=bootloader,
            kernel=kernel,
            initramfs=initramfs,
            cmdline=inputs.cmdline,
            disk_format=request.disk_format,
            compression=request.compression,
            sector_size=inputs.sector_size,
            meta=inputs.meta,
            uki=uki,
            systemd_boot=systemd_boot,
            secureboot=request.secureboot,
            enroll_mode=inputs.enroll_keys,
            enrollment=await self.enrollment(inputs, work),
        )
        out = work / "disk-image"
        await asyncio.to_thread(build_disk_image, disk, work / "disk", out)
        return out

    async def iso(self, inputs: AssetInputs, work: Path) -> Path:
        """A bootable ISO: GRUB, hybrid or UEFI-only per version and flavor (§8)."""
        kind = IsoKind(inputs.bootloader)
        kernel = initramfs = uki = systemd_boot = None
        if kind.uses_grub:
            kernel = (await self.boot_files(inputs, work, ("vmlinuz",)))["vmlinuz"]
            initramfs = await self.initramfs(inputs, work)
        if kind.uses_uki:
            uki = await self.uki(inputs, work, output="iso")
            systemd_boot = await self.systemd_boot(inputs, work)
        secureboot = None
        enrollment = await self.enrollment(inputs, work)
        if enrollment is not None and self._keys is not None:
            secureboot = IsoSecureBoot(enrollment, self._keys.signing_cert_der())
        iso_inputs = IsoInputs(
            version=inputs.version.tag,
            arch=str(inputs.request.arch),
            quirks=inputs.quirks,
            kind=kind,
            cmdline=inputs.cmdline,
            kernel=kernel,
            initramfs=initramfs,
            systemd_boot=systemd_boot,
            uki=uki,
            enroll_keys=EnrollKeys(inputs.enroll_keys),
            secureboot=secureboot,
        )
        out = work / "image.iso"
        cancel = threading.Event()
        try:
            await asyncio.to_thread(build_iso, iso_inputs, work / "iso-build", out, cancel=cancel)
        except asyncio.CancelledError:
            cancel.set()
            raise
        return out

    async def overlay_files(self, overlay: OverlayInput, work: Path) -> OverlayFiles:
        """The target-arch overlay image, extracted defensively, as installer-image pieces."""
        layers = await self._layers(overlay.repository, overlay.manifest_digest)
        root = work / "overlay"
        image = f"{self._release.registry}/{overlay.repository}@{overlay.manifest_digest}"
        await asyncio.to_thread(extract_layers, layers, root, image=image)
        installers = root / "installers"
        chosen = installers / overlay.name
        if not chosen.is_file():
            chosen = installers / "default"
        artifacts = root / "artifacts"
        if chosen.is_symlink() or not chosen.is_file() or not artifacts.is_dir():
            raise InvalidProfile(
                f"overlay image {image} lacks artifacts/ or installers/{overlay.name}"
            )
        return OverlayFiles(artifacts, chosen, overlay.options.encode())

    async def uki(self, inputs: AssetInputs, work: Path, *, output: str) -> Path:
        """A UKI (signed for Secure Boot) for ``output``: ``uki``, ``iso``, ``image``,
        ``installer`` — which decides the profiles (reset entries) it carries."""
        files = await self.boot_files(inputs, work, ("vmlinuz", "systemd-stub.efi"))
        initrd = await self.initramfs(inputs, work)
        keys, pcr = self.signing(inputs)
        out = work / f"{output}.efi"
        await asyncio.to_thread(
            build_uki,
            files["systemd-stub.efi"],
            files["vmlinuz"],
            initrd,
            inputs.cmdline,
            talos_os_release(str(inputs.version)),
            kernel_version(files["vmlinuz"]),
            out,
            profiles=uki_profiles(inputs.quirks, output, inputs.cmdline),
            pcr=pcr,
            secureboot=keys,
        )
        return out

    async def extensions(self, inputs: AssetInputs, work: Path) -> list[ExtensionLayers]:
        """Every extension layer of the flavor, in order: official ones, then the virtual
        ``schematic`` extension, then the embedded machine config (the imager appends it)."""
        layers = [
            ExtensionLayers(
                f"{self._release.registry}/{ext.repository}@{ext.manifest_digest}",
                tuple(await self._layers(ext.repository, ext.manifest_digest)),
            )
            for ext in inputs.extensions
        ]
        schematic = work / "schematic.tar"
        schematic.write_bytes(
            schematic_extension(
                inputs.flavor_id,
                inputs.canonical_flavor,
                inputs.external_url,
                with_extra_info=inputs.quirks.schematic_extra_info,
            )
        )
        layers.append(ExtensionLayers("schematic", (schematic,)))
        if inputs.embedded_config:
            config = work / "embedded-config.tar"
            config.write_bytes(embedded_config_extension(inputs.embedded_config))
            layers.append(ExtensionLayers("embedded-config", (config,)))
        return layers

    async def initramfs(self, inputs: AssetInputs, work: Path) -> Path:
        """The base initramfs with the flavor's extensions appended (talos-assets.md §4);
        built once per build, later steps (UKI, disk image) reuse it."""
        out = work / "initramfs.xz"
        if out.exists():
            return out
        base = (await self.boot_files(inputs, work, ("initramfs.xz",)))["initramfs.xz"]
        extensions = await self.extensions(inputs, work)
        options = InitramfsOptions.for_version(inputs.version)
        cancel = threading.Event()
        build = asyncio.to_thread(
            build_initramfs, base, extensions, options, work / "initramfs", out, cancel=cancel
        )
        try:
            await build
        except asyncio.CancelledError:
            cancel.set()  # stops the running tool; the thread ends on its own
            raise
        return out
