"""The catalog: versions from ``imager`` tags, extensions and overlays from catalogue images.

Every answer is cached per key (``versions``, ``extensions:<v>``, ``overlays:<v>``) for
``refresh_seconds``; concurrent misses for one key share a single fetch; a failed fetch is never
cached, so the next request tries again and the service recovers as soon as the registry is
back. Registry failures become ``CatalogUnavailable`` naming the registry and image.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from image_service.imagefs import LayerFormatError, read_layer_files
from image_service.oci import RegistryClient, RegistryError
from image_service.versions import InvalidVersion, Version, offered_versions
from services.catalog.errors import CatalogUnavailable, InvalidVersionText, VersionNotAvailable
from services.catalog.model import (
    CatalogFormatError,
    Extension,
    Overlay,
    parse_extensions,
    parse_overlays,
)

__all__ = ["OVERLAYS_SINCE", "Catalog", "ReleaseRepos"]

T = TypeVar("T")

OVERLAYS_SINCE = (1, 7, 0)


@dataclass(frozen=True)
class ReleaseRepos:
    """Repository paths of the release images inside the release registry."""

    imager: str = "siderolabs/imager"
    extensions: str = "siderolabs/extensions"
    overlays: str = "siderolabs/overlays"


@dataclass
class _Entry:
    value: Any
    expires: float


class Catalog:
    def __init__(
        self,
        client: RegistryClient,
        *,
        minimum: Version,
        refresh_seconds: float = 900.0,
        repos: ReleaseRepos | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._minimum = minimum
        self._ttl = refresh_seconds
        self._repos = repos or ReleaseRepos()
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    @property
    def registry(self) -> str:
        return self._client.registry

    async def _cached(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        entry = self._cache.get(key)
        if entry is not None and entry.expires > self._clock():
            value: T = entry.value
            return value
        pending = self._inflight.get(key)
        if pending is not None:
            shared: T = await asyncio.shield(pending)
            return shared
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await fetch()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        else:
            self._cache[key] = _Entry(result, self._clock() + self._ttl)
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    async def versions(self) -> list[Version]:
        async def fetch() -> list[Version]:
            try:
                tags = await self._client.list_tags(self._repos.imager)
            except RegistryError as exc:
                raise CatalogUnavailable(
                    f"cannot list Talos versions from {self.registry}/{self._repos.imager}: {exc}"
                ) from exc
            return offered_versions(tags, self._minimum)

        return await self._cached("versions", fetch)

    async def resolve(self, text: str) -> Version:
        """Parse a requested version and check that it is offered."""
        try:
            version = Version.parse(text)
        except InvalidVersion as exc:
            raise InvalidVersionText(f"error parsing version: {exc}") from exc
        if version not in await self.versions():
            raise VersionNotAvailable(f"version {version} is not available")
        return version

    async def _read(self, repo: str, version: Version, names: list[str]) -> dict[str, bytes]:
        image = f"{self.registry}/{repo}:{version.tag}"
        try:
            fetched = await self._client.get_manifest(repo, version.tag)
            layers = [
                await self._client.fetch_blob(repo, layer.digest, size=layer.size)
                for layer in fetched.document.layers
            ]
            return await asyncio.to_thread(read_layer_files, layers, names)
        except RegistryError as exc:
            raise CatalogUnavailable(f"cannot read {image}: {exc}") from exc
        except LayerFormatError as exc:
            raise CatalogUnavailable(f"catalogue image {image} is malformed: {exc}") from exc

    async def extensions(self, text: str) -> list[Extension]:
        version = await self.resolve(text)

        async def fetch() -> list[Extension]:
            files = await self._read(
                self._repos.extensions, version, ["image-digests", "descriptions.yaml"]
            )
            try:
                return parse_extensions(
                    files.get("image-digests", b"").decode(),
                    files.get("descriptions.yaml", b"").decode(),
                    self.registry,
                )
            except (CatalogFormatError, UnicodeDecodeError) as exc:
                raise CatalogUnavailable(
                    f"extensions catalogue of {version.tag} is malformed: {exc}"
                ) from exc

        return await self._cached(f"extensions:{version}", fetch)

    async def overlays(self, text: str) -> list[Overlay]:
        version = await self.resolve(text)
        if version.core < OVERLAYS_SINCE:
            return []

        async def fetch() -> list[Overlay]:
            files = await self._read(self._repos.overlays, version, ["overlays.yaml"])
            try:
                return parse_overlays(files.get("overlays.yaml", b"").decode())
            except (CatalogFormatError, UnicodeDecodeError) as exc:
                raise CatalogUnavailable(
                    f"overlays catalogue of {version.tag} is malformed: {exc}"
                ) from exc

        return await self._cached(f"overlays:{version}", fetch)
