"""iPXE scripts: ``GET /pxe/{flavor}/{version}/{path}`` (reference/api.md §9).

``path`` is ``<platform>-<arch>[-secureboot]``; iPXE clients usually chain
``…/metal-${buildarch}``, so the iPXE arch names ``x86_64`` and ``i386`` mean amd64.

The handler asks the builder for the ``cmdline-<path>`` asset — which validates the flavor, the
version, the path and Secure Boot availability with upstream's error texts, and caches the
cmdline like any other asset — reads it back, and substitutes it into upstream's template:

* standard: ``#!ipxe``, blank line, ``imgfree``, ``kernel <kernel URL> <cmdline>``,
  ``initrd <initramfs URL>``, ``boot``;
* Secure Boot: ``kernel <UKI URL> <cmdline>`` and no ``initrd`` line.

The URLs live under the external PXE URL (which defaults to the external URL), path prefix kept,
with the version ``v``-prefixed and the arch normalised: ``image/<id>/<v>/kernel-amd64``,
``image/<id>/<v>/initramfs-amd64.xz``, ``image/<id>/<v>/metal-amd64-secureboot-uki.efi``.

Errors go through the HTTP frontend's error table (same transport, same plain-text bodies as
upstream, whose one wrapper serves ``/image`` and ``/pxe`` alike). Like upstream, the route has
no HEAD: ``HEAD /pxe/…`` is the router's 405.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc.aio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from frontends.common.errors import rpc_error
from frontends.common.web import text_response
from image_service.proto import builder_pb2, builder_pb2_grpc

__all__ = ["MAX_CMDLINE_BYTES", "PxeFrontend", "Target", "parse_target", "render_script"]

log = logging.getLogger(__name__)

_MEDIA_TYPE = "text/plain; charset=utf-8"
# A kernel cmdline is at most a few KiB (COMMAND_LINE_SIZE); anything bigger is a builder bug.
MAX_CMDLINE_BYTES = 64 * 1024

_SECUREBOOT = "-secureboot"
# iPXE's ${buildarch} names (api.md §7.2); the builder accepts them, the URLs use amd64.
_ARCH_ALIASES = {"x86_64": "amd64", "i386": "amd64"}
# RFC 3986 sub-delims plus ":" and "@": what a path segment may carry unescaped.
_SEGMENT_SAFE = "!$&'()*+,;=:@"


@dataclass(frozen=True)
class Target:
    """The ``<platform>-<arch>[-secureboot]`` part of a PXE path, arch normalised."""

    platform: str
    arch: str
    secureboot: bool


def parse_target(path: str) -> Target:
    """Split a path the builder has already accepted as ``cmdline-<path>``.

    The arch (``amd64``, ``arm64``, ``x86_64``, ``i386``) never contains a dash, so the last dash
    separates it from the platform, ``digital-ocean`` included.
    """
    stem = path.removesuffix(_SECUREBOOT)
    platform, _, arch = stem.rpartition("-")
    return Target(platform, _ARCH_ALIASES.get(arch, arch), stem != path)


def _image_url(base_url: str, flavor_id: str, version: str, filename: str) -> str:
    segments = ("image", flavor_id, version, filename)
    return (
        base_url.rstrip("/")
        + "/"
        + "/".join(urllib.parse.quote(s, _SEGMENT_SAFE) for s in segments)
    )


def render_script(
    base_url: str, flavor_id: str, version: str, target: Target, cmdline: bytes
) -> bytes:
    """Upstream's iPXE script, byte for byte; ``version`` as it appears in the URLs (with ``v``).

    The cmdline is substituted as is (no escaping, as upstream; it has no trailing newline).
    """
    if target.secureboot:
        uki = f"{target.platform}-{target.arch}{_SECUREBOOT}-uki.efi"
        kernel_url = _image_url(base_url, flavor_id, version, uki)
        return b"#!ipxe\n\nimgfree\nkernel " + kernel_url.encode() + b" " + cmdline + b"\nboot\n"
    kernel_url = _image_url(base_url, flavor_id, version, f"kernel-{target.arch}")
    initrd_url = _image_url(base_url, flavor_id, version, f"initramfs-{target.arch}.xz")
    return (
        b"#!ipxe\n\nimgfree\nkernel "
        + kernel_url.encode()
        + b" "
        + cmdline
        + b"\ninitrd "
        + initrd_url.encode()
        + b"\nboot\n"
    )


class _GetOnlyRoute(Route):
    """A GET route without the HEAD Starlette adds to every GET route (upstream: HEAD → 405)."""

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        super().__init__(path, endpoint, methods=["GET"])
        self.methods = {"GET"}


class PxeFrontend:
    """The ``/pxe`` route bound to the builder's channel and the external PXE URL."""

    def __init__(self, builder: grpc.aio.Channel, pxe_base_url: str) -> None:
        self._builder = builder_pb2_grpc.BuilderServiceStub(builder)
        self._base_url = pxe_base_url

    def routes(self) -> list[BaseRoute]:
        return [_GetOnlyRoute("/pxe/{flavor_id}/{version}/{path}", self.script)]

    async def script(self, request: Request) -> Response:
        flavor_id = request.path_params["flavor_id"]
        version = request.path_params["version"]
        if not version.startswith("v"):
            version = f"v{version}"  # upstream's only normalisation; the URLs carry this form
        path = request.path_params["path"]
        try:
            cmdline = await self._cmdline(flavor_id, version, f"cmdline-{path}")
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc)
        if cmdline is None:
            return text_response(500, "internal server error")
        body = render_script(self._base_url, flavor_id, version, parse_target(path), cmdline)
        return Response(body, media_type=_MEDIA_TYPE)

    async def _cmdline(self, flavor_id: str, version: str, path: str) -> bytes | None:
        """The cmdline asset's bytes, or ``None`` (logged) when the builder misbehaves."""
        asset: builder_pb2.AssetDescriptor | None = None
        call = self._builder.Build(
            builder_pb2.BuildRequest(flavor_id=flavor_id, version=version, path=path)
        )
        async for event in call:
            if event.HasField("asset"):
                asset = event.asset
                break
        if asset is None:
            log.error("the builder ended the stream for %s without an asset", path)
            return None
        if asset.size > MAX_CMDLINE_BYTES:
            log.error("the builder's %s is %d bytes, over %d", path, asset.size, MAX_CMDLINE_BYTES)
            return None
        chunks = []
        reader = self._builder.ReadAsset(
            builder_pb2.ReadAssetRequest(digest=asset.digest, length=asset.size)
        )
        async for chunk in reader:
            chunks.append(chunk.data)
        return b"".join(chunks)
