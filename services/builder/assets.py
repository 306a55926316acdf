"""Assemblers: turn resolved inputs into one output file in a private work directory.

``Assembler.assemble(inputs, work)`` dispatches on the asset kind. Inputs arrive pinned by digest
(``AssetInputs``); blobs come through the release client's content-addressed cache, so each
input is downloaded once. Nothing here decides *what* to build — that is the pipeline's plan —
and nothing here touches the asset store: the scheduler commits the returned file.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from image_service.imagefs import LayerFormatError, copy_layer_files
from image_service.oci import Platform, RegistryClient, RegistryError
from image_service.versions import Version
from services.builder.cmdline import build_cmdline
from services.builder.errors import BuildFailed, KindNotBuilt
from services.builder.paths import AssetKind, AssetRequest
from services.builder.quirks import Quirks

__all__ = ["Assembler", "AssetInputs", "ExtensionInput"]

IMAGER_REPO = "siderolabs/imager"


@dataclass(frozen=True)
class ExtensionInput:
    name: str  # catalogue name, e.g. "siderolabs/gvisor"
    repository: str
    manifest_digest: str  # the target arch's image manifest


@dataclass(frozen=True)
class AssetInputs:
    request: AssetRequest
    version: Version
    quirks: Quirks
    imager_digest: str
    extensions: tuple[ExtensionInput, ...]
    flavor_id: str
    canonical_flavor: bytes
    extra_kernel_args: tuple[str, ...]
    meta: tuple[tuple[int, str], ...]
    external_url: str


class Assembler:
    def __init__(self, release: RegistryClient) -> None:
        self._release = release

    async def assemble(self, inputs: AssetInputs, work: Path) -> Path:
        match inputs.request.kind:
            case AssetKind.KERNEL:
                return await self._kernel(inputs, work)
            case AssetKind.CMDLINE:
                return await asyncio.to_thread(self._cmdline, inputs, work)
            case AssetKind.INITRAMFS:
                return await self._initramfs(inputs, work)
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
        """Copy ``usr/install/<arch>/<name>`` files out of the imager image into ``work``."""
        arch = inputs.request.arch
        layers = await self._layers(IMAGER_REPO, inputs.imager_digest)
        wanted = {f"usr/install/{arch}/{name}": work / f"input-{name}" for name in names}
        try:
            found = await asyncio.to_thread(copy_layer_files, layers, wanted)
        except LayerFormatError as exc:
            raise BuildFailed(f"imager {inputs.version.tag}: {exc}") from exc
        missing = sorted(set(wanted) - found)
        if missing:
            raise BuildFailed(f"imager {inputs.version.tag} lacks {', '.join(missing)}")
        return {name: work / f"input-{name}" for name in names}

    async def _kernel(self, inputs: AssetInputs, work: Path) -> Path:
        files = await self.boot_files(inputs, work, ("vmlinuz",))
        return files["vmlinuz"]

    def _cmdline(self, inputs: AssetInputs, work: Path) -> Path:
        request = inputs.request
        text = build_cmdline(
            request.platform,
            request.arch,
            inputs.version,
            secureboot=request.secureboot,
            iso=False,
            meta=inputs.meta,
            extra_args=inputs.extra_kernel_args,
        )
        out = work / "cmdline"
        out.write_text(text)
        return out

    async def _initramfs(self, inputs: AssetInputs, work: Path) -> Path:
        raise KindNotBuilt("initramfs")

    async def extension_layers(self, ext: ExtensionInput, arch: str) -> list[Path]:
        del arch  # the manifest digest already names the target arch's image
        return await self._layers(ext.repository, ext.manifest_digest)

    @staticmethod
    def platform(arch: str) -> Platform:
        return Platform("linux", arch)
