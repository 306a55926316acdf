"""The builder's view of its peers: flavors and the catalog, over gRPC.

``Peers`` wraps the two stubs and turns their answers into what the pipeline needs: a decoded
flavor (404 ``schematic ID "<id>" not found`` when unknown), an offered ``Version`` (400 for
malformed, 404 for unknown), and official extensions resolved by name with upstream's alias
table (reference/schematic.md §6). gRPC failures of the peers become the matching service errors,
so the builder's own error table stays the only translation to its callers.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import grpc.aio

from image_service.errors import InvalidInput, NotFound, ServiceError, Unavailable
from image_service.flavor.decode import decode_flavor
from image_service.flavor.model import Flavor
from image_service.proto import catalog_pb2, catalog_pb2_grpc, flavor_pb2, flavor_pb2_grpc
from image_service.versions import InvalidVersion, Version
from services.builder.errors import InvalidProfile

__all__ = ["ALIASES", "CatalogExtension", "FlavorUnknown", "Peers", "VersionUnknown"]

# Old extension name → new name; tried once when the name is not in the catalogue.
ALIASES: dict[str, str] = {
    "siderolabs/v4l-uvc": "siderolabs/v4l-uvc-drivers",
    "siderolabs/usb-modem": "siderolabs/usb-modem-drivers",
    "siderolabs/gasket": "siderolabs/gasket-driver",
    "siderolabs/talos-vmtoolsd": "siderolabs/vmtoolsd-guest-agent",
    "siderolabs/xe-guest-utilities": "siderolabs/xen-guest-agent",
    "siderolabs/nvidia-container-toolkit": "siderolabs/nvidia-container-toolkit-lts",
    "siderolabs/nvidia-open-gpu-kernel-modules": "siderolabs/nvidia-open-gpu-kernel-modules-lts",
    "siderolabs/nonfree-kmod-nvidia": "siderolabs/nonfree-kmod-nvidia-lts",
    "siderolabs/nvidia-fabricmanager": "siderolabs/nvidia-fabric-manager-lts",
    "siderolabs/i915-ucode": "siderolabs/i915",
    "siderolabs/amdgpu-firmware": "siderolabs/amdgpu",
}


class FlavorUnknown(NotFound):
    """The flavor ID names no stored flavor."""


class VersionUnknown(NotFound):
    """The version is well-formed but not offered."""


@dataclass(frozen=True)
class CatalogExtension:
    name: str
    ref: str  # registry/path:tag as the catalog reports it
    digest: str

    @property
    def repository(self) -> str:
        return self.name


def _peer_error(exc: grpc.aio.AioRpcError, peer: str) -> ServiceError:
    code = exc.code()
    details = exc.details() or code.name
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInput(details)
    if code is grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"{peer}: {details}")
    return ServiceError(f"{peer} failed: {code.name} {details}")


class Peers:
    def __init__(self, flavor: grpc.aio.Channel, catalog: grpc.aio.Channel) -> None:
        self._flavors = flavor_pb2_grpc.FlavorServiceStub(flavor)
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(catalog)

    async def flavor(self, flavor_id: str) -> tuple[Flavor, bytes]:
        """The decoded flavor and its canonical YAML."""
        try:
            answer = await self._flavors.GetFlavor(flavor_pb2.GetFlavorRequest(id=flavor_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                raise FlavorUnknown(f'schematic ID "{flavor_id}" not found') from None
            raise _peer_error(exc, "flavor service") from exc
        return decode_flavor(answer.canonical_yaml), answer.canonical_yaml

    async def version(self, text: str) -> Version:
        try:
            version = Version.parse(text if text.startswith("v") else "v" + text)
        except InvalidVersion as exc:
            raise InvalidInput(f"error parsing version: {exc}") from exc
        try:
            answer = await self._catalog.ListVersions(catalog_pb2.ListVersionsRequest())
        except grpc.aio.AioRpcError as exc:
            raise _peer_error(exc, "catalog service") from exc
        if version.tag not in answer.versions:
            raise VersionUnknown(f"version {version} is not available")
        return version

    async def overlay(self, version: Version, name: str) -> CatalogExtension:
        """The official overlay ``name`` of a version (looked up by name only, as upstream)."""
        try:
            answer = await self._catalog.ListOverlays(
                catalog_pb2.ListOverlaysRequest(version=version.tag)
            )
        except grpc.aio.AioRpcError as exc:
            raise _peer_error(exc, "catalog service") from exc
        for overlay in answer.overlays:
            if overlay.name == name:
                return CatalogExtension(overlay.image, overlay.ref, overlay.digest)
        raise InvalidProfile.overlay_unavailable(name, version)

    async def extensions(self, version: Version, names: tuple[str, ...]) -> list[CatalogExtension]:
        """Resolve official extension names (with aliases) in the flavor's order."""
        if not names:
            return []
        try:
            answer = await self._catalog.ListExtensions(
                catalog_pb2.ListExtensionsRequest(version=version.tag)
            )
        except grpc.aio.AioRpcError as exc:
            raise _peer_error(exc, "catalog service") from exc
        available = {e.name: CatalogExtension(e.name, e.ref, e.digest) for e in answer.extensions}
        resolved = []
        for name in names:
            found = available.get(name) or available.get(ALIASES.get(name, ""))
            if found is None:
                raise InvalidProfile.extension_unavailable(name, version)
            resolved.append(found)
        return resolved
