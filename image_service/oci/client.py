"""``RegistryClient``: async OCI distribution client for one registry.

One client talks to one registry (``HOST[:PORT]``; HTTPS, or plain HTTP when ``insecure``)
and offers the operations the catalog, the builder and the OCI storage backend need:

* manifests: ``head_manifest``, ``get_manifest`` (resolving an index to one platform,
  linux/amd64 by default), ``get_manifest_or_index``, ``put_manifest``, ``delete_manifest``;
* tags: ``list_tags``, following ``Link`` pagination;
* blobs: ``blob_exists``, ``fetch_blob`` into the content-addressed ``BlobCache`` (verified
  while streaming, resumed with ``Range`` after a broken transfer, fetched once per digest
  even when requested concurrently), ``stream_blob`` for pass-through (served from the cache
  when present), and ``push_blob`` (skipped when the registry has it; files are streamed).

Every name is validated (``names``) before it becomes part of a URL; HTTP, retries, auth and
error mapping live in ``_transport``; documents are parsed by ``media``. Blobs are never held
in memory whole: they move in chunks of at most 1 MiB.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from types import TracebackType

import httpx

from image_service.oci._files import hash_file, read_file
from image_service.oci._transport import Body, Transport
from image_service.oci.auth import scope_for
from image_service.oci.cache import BlobCache, BlobWriter
from image_service.oci.errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidManifest,
    PlatformNotFound,
    RegistryResponseError,
    RegistryUnavailable,
    UnsupportedMediaType,
)
from image_service.oci.media import (
    INDEX_MEDIA_TYPES,
    LINUX_AMD64,
    MANIFEST_MEDIA_TYPES,
    OCTET_STREAM,
    Descriptor,
    Fetched,
    Index,
    Manifest,
    Platform,
    parse_manifest,
)
from image_service.oci.names import (
    is_digest,
    validate_digest,
    validate_reference,
    validate_repository,
)

__all__ = ["RegistryClient"]

_ACCEPT = ", ".join(sorted(MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES))
_MANIFEST_LIMIT = 4 << 20
_MANIFEST_CACHE_ENTRIES = 1024  # distribution refuses larger manifests too
_TAGS_PAGE_LIMIT = 16 << 20
_MAX_TAG_PAGES = 10_000


class RegistryClient:
    """Async client for one OCI registry; use as ``async with RegistryClient(...) as c``."""

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool = False,
        cache: BlobCache | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.1,
    ) -> None:
        self._t = Transport(
            registry, insecure=insecure, timeout=timeout, retries=retries, backoff=backoff
        )
        self._cache = cache
        self._retries = retries
        # Manifests by (repository, digest): resolving a pinned reference costs no request.
        self._manifests: OrderedDict[tuple[str, str], Fetched[Manifest | Index]] = OrderedDict()
        self._inflight: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @property
    def registry(self) -> str:
        """``HOST[:PORT]`` of the registry this client talks to."""
        return self._t.registry

    async def aclose(self) -> None:
        await self._t.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- tags -------------------------------------------------------------------------------

    async def list_tags(self, repo: str, *, page_size: int | None = None) -> list[str]:
        """All tags of ``repo``, following ``Link: <…>; rel="next"`` pages."""
        validate_repository(repo)
        url = self._t.url(f"/v2/{repo}/tags/list")
        if page_size is not None:
            url = url.copy_merge_params({"n": str(page_size)})
        subject, tags = self._name(repo), []
        for _ in range(_MAX_TAG_PAGES):
            async with self._t.stream("GET", url, scope=scope_for(repo), subject=subject) as r:
                body = await self._t.read_limited(r, _TAGS_PAGE_LIMIT, subject)
                next_link = r.links.get("next", {}).get("url")
            tags.extend(_parse_tags(body, subject))
            if not next_link:
                return tags
            url = self._t.follow(url, next_link, f"the next page of tags of {subject}")
        raise RegistryResponseError(f"tag list of {subject} does not end", registry=self.registry)

    # -- manifests --------------------------------------------------------------------------

    async def head_manifest(self, repo: str, reference: str) -> Descriptor:
        """Digest, media type and size of a manifest or index, without downloading it."""
        url, subject = self._manifest_url(repo, reference)
        async with self._t.stream(
            "HEAD", url, scope=scope_for(repo), subject=subject, headers={"Accept": _ACCEPT}
        ) as response:
            digest = response.headers.get("docker-content-digest", "")
            media_type = response.headers.get("content-type", "").split(";")[0].strip()
            length = response.headers.get("content-length", "")
        if is_digest(digest) and media_type and length.isdigit():
            if is_digest(reference) and digest != reference:
                raise self._mismatch(subject, reference, digest)
            return Descriptor(media_type, digest, int(length))
        return (await self.get_manifest_or_index(repo, reference)).descriptor

    async def get_manifest_or_index(self, repo: str, reference: str) -> Fetched[Manifest | Index]:
        """The manifest or index ``reference`` names, as served (no platform resolution).

        The digest is computed over the raw bytes and checked against the reference when it
        is a digest and against ``Docker-Content-Digest`` when the registry sends one.
        """
        if is_digest(reference):
            cached = self._manifests.get((repo, reference))
            if cached is not None:  # content-addressed: a digest's document never changes
                self._manifests.move_to_end((repo, reference))
                return cached
        url, subject = self._manifest_url(repo, reference)
        async with self._t.stream(
            "GET", url, scope=scope_for(repo), subject=subject, headers={"Accept": _ACCEPT}
        ) as response:
            raw = await self._t.read_limited(response, _MANIFEST_LIMIT, subject)
            reported = response.headers.get("docker-content-digest")
            content_type = response.headers.get("content-type")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        for expected in (reference if is_digest(reference) else None, reported):
            if expected is not None and expected != digest:
                raise self._mismatch(subject, expected, digest)
        try:
            document = parse_manifest(raw, content_type)
        except InvalidManifest as exc:
            raise InvalidManifest(f"{subject}: {exc}", registry=self.registry) from exc
        except UnsupportedMediaType as exc:
            raise UnsupportedMediaType(
                f"{subject}: {exc}", media_type=exc.media_type, registry=self.registry
            ) from exc
        fetched: Fetched[Manifest | Index] = Fetched(document, digest, document.media_type, raw)
        self._manifests[(repo, digest)] = fetched
        if len(self._manifests) > _MANIFEST_CACHE_ENTRIES:
            self._manifests.popitem(last=False)
        return fetched

    async def get_manifest(
        self, repo: str, reference: str, *, platform: Platform | None = None
    ) -> Fetched[Manifest]:
        """The image manifest for ``reference``; an index is resolved to ``platform``.

        Without ``platform`` an index resolves to linux/amd64 (what the factory pulls the
        imager and catalog images as).
        """
        top = await self.get_manifest_or_index(repo, reference)
        if isinstance(top.document, Manifest):
            return Fetched(top.document, top.digest, top.media_type, top.raw)
        wanted = platform or LINUX_AMD64
        chosen = top.document.select(wanted)
        if chosen is None:
            offered = ", ".join(
                sorted({str(d.platform) for d in top.document.manifests if d.platform})
            )
            raise PlatformNotFound(
                f"{self._image(repo, reference)} has no manifest for platform {wanted} "
                f"(it offers: {offered or 'none'})",
                registry=self.registry,
            )
        child = await self.get_manifest_or_index(repo, chosen.digest)
        if not isinstance(child.document, Manifest):
            raise UnsupportedMediaType(
                f"{self._image(repo, chosen.digest)} (platform {wanted} of "
                f"{self._image(repo, reference)}) is a nested index, which is not supported",
                media_type=child.media_type,
                registry=self.registry,
            )
        return Fetched(child.document, child.digest, child.media_type, child.raw, top.digest)

    async def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        """Upload a manifest or index under a tag or its digest; returns its digest.

        The blobs it refers to must already be in ``repo`` (see ``push_blob``).
        """
        url, subject = self._manifest_url(repo, reference)
        if media_type not in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES:
            raise UnsupportedMediaType(
                f"cannot push {subject} as {media_type!r}: not a manifest or index media type",
                media_type=media_type,
            )
        document = parse_manifest(raw, media_type)
        if document.media_type != media_type:
            raise InvalidManifest(
                f"manifest for {subject} declares mediaType {document.media_type!r} "
                f"but is pushed as {media_type!r}"
            )
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if is_digest(reference) and reference != digest:
            raise self._mismatch(subject, reference, digest)
        async with self._t.stream(
            "PUT",
            url,
            scope=scope_for(repo, push=True),
            subject=subject,
            ok=(201,),
            headers={"Content-Type": media_type},
            content=raw,
        ) as response:
            reported = response.headers.get("docker-content-digest")
        if reported is not None and reported != digest:
            raise self._mismatch(subject, digest, reported)
        return digest

    async def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete a manifest by digest (the registry must allow deletes)."""
        self._manifests.pop((repo, digest), None)
        url, subject = self._manifest_url(repo, validate_digest(digest))
        async with self._t.stream(
            "DELETE", url, scope=scope_for(repo, push=True), subject=subject, ok=(202,)
        ):
            pass

    # -- blobs ------------------------------------------------------------------------------

    async def blob_exists(self, repo: str, digest: str) -> bool:
        """True if ``repo`` holds the blob ``digest``."""
        return await self._blob_exists(repo, digest, scope_for(repo))

    async def blob_size(self, repo: str, digest: str) -> int:
        """The size of blob ``digest`` in ``repo`` (HEAD); ``ImageNotFound`` when absent."""
        validate_repository(repo)
        validate_digest(digest)
        async with self._t.stream(
            "HEAD",
            self._t.url(f"/v2/{repo}/blobs/{digest}"),
            scope=scope_for(repo),
            subject=self._blob(repo, digest),
        ) as response:
            length = response.headers.get("content-length", "")
        if not length.isdigit():
            raise RegistryResponseError(
                f"{self._blob(repo, digest)}: HEAD answered without Content-Length",
                status=200,
                code=None,
                registry=self.registry,
            )
        return int(length)

    async def fetch_blob(self, repo: str, digest: str, *, size: int | None = None) -> Path:
        """Download a blob into the cache (once) and return its path there.

        The content is hashed while it streams to a staging file and only renamed into the
        cache when it matches ``digest``; a cached blob costs no request at all. ``size``, if
        known from a descriptor, caps the download (a registry streaming more is cut off).
        """
        if self._cache is None:
            raise ValueError("fetch_blob needs a BlobCache: pass cache= to RegistryClient")
        cache = self._cache
        path = cache.path_for(digest)
        validate_repository(repo)
        lock = self._inflight.get(digest)
        if lock is None:
            lock = self._inflight[digest] = asyncio.Lock()
        async with lock:
            if await asyncio.to_thread(path.is_file):
                return path
            writer = await asyncio.to_thread(cache.writer, digest, source=self._name(repo))
            with writer:
                for attempt in range(self._retries + 1):
                    if await self._download(writer, repo, digest, size, attempt < self._retries):
                        break
                return await asyncio.to_thread(writer.commit)

    async def stream_blob(
        self, repo: str, digest: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Yield a blob (or ``length`` bytes from ``offset``) in chunks, for pass-through.

        Served from the cache when it has the blob. A whole blob streamed from the registry
        is verified as it passes: ``DigestMismatch`` is raised after the last chunk. Close the
        iterator (``contextlib.aclosing``) when not consuming it to the end.
        """
        validate_repository(repo)
        validate_digest(digest)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid blob range offset={offset} length={length}")
        if length == 0:
            return
        if self._cache is not None and self._cache.has(digest):
            async with aclosing(read_file(self._cache.path_for(digest), offset, length)) as cached:
                async for chunk in cached:
                    yield chunk
            return
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        subject = self._blob(repo, digest)
        async with self._t.stream(
            "GET",
            self._t.url(f"/v2/{repo}/blobs/{digest}"),
            scope=scope_for(repo),
            subject=subject,
            ok=(200, 206),
            headers=headers,
        ) as response:
            skip = offset if response.status_code == 200 else 0
            remaining = length
            hasher = hashlib.sha256() if response.status_code == 200 and length is None else None
            async with aclosing(self._t.iter_body(response, subject)) as chunks:
                async for chunk in chunks:
                    if hasher is not None:
                        hasher.update(chunk)
                    piece = chunk[skip:]
                    skip = max(skip - len(chunk), 0)
                    if remaining is not None:
                        piece = piece[:remaining]
                        remaining -= len(piece)
                    if piece:
                        yield piece
                    if remaining == 0:
                        return
        if hasher is not None and "sha256:" + hasher.hexdigest() != digest:
            raise self._mismatch(subject, digest, "sha256:" + hasher.hexdigest())

    async def push_blob(
        self, repo: str, source: Path | bytes, media_type: str = OCTET_STREAM
    ) -> Descriptor:
        """Upload a blob unless ``repo`` already has it; returns its descriptor.

        ``bytes`` go up in one POST + PUT; a file is hashed, then streamed in chunks in a
        single PUT (replayed from the file on retry), never read into memory whole.
        """
        validate_repository(repo)
        body: Body
        if isinstance(source, bytes):
            digest, size, body = "sha256:" + hashlib.sha256(source).hexdigest(), len(source), source
        else:
            digest, size = await asyncio.to_thread(hash_file, source)
            body = lambda: read_file(source, 0, None)  # noqa: E731 - a replayable body
        descriptor = Descriptor(media_type, digest, size)
        scope = scope_for(repo, push=True)
        if await self._blob_exists(repo, digest, scope):
            return descriptor
        subject = f"upload of {self._blob(repo, digest)}"
        async with self._t.stream(
            "POST",
            self._t.url(f"/v2/{repo}/blobs/uploads/"),
            scope=scope,
            subject=subject,
            ok=(202,),
        ) as response:
            location = response.headers.get("location", "")
        upload = self._t.follow(self._t.url(f"/v2/{repo}/blobs/uploads/"), location, subject)
        async with self._t.stream(
            "PUT",
            upload.copy_merge_params({"digest": digest}),
            scope=scope,
            subject=subject,
            ok=(201,),
            headers={"Content-Type": OCTET_STREAM, "Content-Length": str(size)},
            content=body,
        ) as response:
            reported = response.headers.get("docker-content-digest")
        if reported is not None and reported != digest:
            raise self._mismatch(subject, digest, reported)
        return descriptor

    # -- helpers ----------------------------------------------------------------------------

    async def _blob_exists(self, repo: str, digest: str, scope: str) -> bool:
        validate_repository(repo)
        validate_digest(digest)
        try:
            async with self._t.stream(
                "HEAD",
                self._t.url(f"/v2/{repo}/blobs/{digest}"),
                scope=scope,
                subject=self._blob(repo, digest),
            ):
                return True
        except ImageNotFound:
            return False

    async def _download(
        self, writer: BlobWriter, repo: str, digest: str, size: int | None, can_resume: bool
    ) -> bool:
        """Stream the (rest of the) blob into ``writer``; False if broken off but resumable."""
        subject = self._blob(repo, digest)
        headers = {"Range": f"bytes={writer.written}-"} if writer.written else {}
        async with self._t.stream(
            "GET",
            self._t.url(f"/v2/{repo}/blobs/{digest}"),
            scope=scope_for(repo),
            subject=subject,
            ok=(200, 206),
            headers=headers,
        ) as response:
            if response.status_code == 200 and writer.written:
                await asyncio.to_thread(writer.reset)  # the registry ignored Range
            elif response.status_code == 206 and not response.headers.get(
                "content-range", ""
            ).startswith(f"bytes {writer.written}-"):
                raise RegistryResponseError(
                    f"registry {self.registry} answered a range request for {subject} with "
                    f"Content-Range {response.headers.get('content-range')!r}",
                    registry=self.registry,
                )
            try:
                async with aclosing(self._t.iter_body(response, subject)) as chunks:
                    async for chunk in chunks:
                        if size is not None and writer.written + len(chunk) > size:
                            raise DigestMismatch(
                                f"{subject} is larger than the {size} bytes its descriptor says",
                                expected=digest,
                                actual="",
                                registry=self.registry,
                            )
                        await asyncio.to_thread(writer.write, chunk)
            except RegistryUnavailable:
                if can_resume:
                    return False
                raise
        return True

    def _manifest_url(self, repo: str, reference: str) -> tuple[httpx.URL, str]:
        validate_repository(repo)
        validate_reference(reference)
        return self._t.url(f"/v2/{repo}/manifests/{reference}"), self._image(repo, reference)

    def _name(self, repo: str) -> str:
        return f"{self.registry}/{repo}"

    def _image(self, repo: str, reference: str) -> str:
        return f"{self._name(repo)}{'@' if is_digest(reference) else ':'}{reference}"

    def _blob(self, repo: str, digest: str) -> str:
        return f"blob {digest} in {self._name(repo)}"

    def _mismatch(self, subject: str, expected: str, actual: str) -> DigestMismatch:
        return DigestMismatch(
            f"{subject}: expected digest {expected} but the content hashes to {actual}",
            expected=expected,
            actual=actual,
            registry=self.registry,
        )


def _parse_tags(body: bytes, subject: str) -> list[str]:
    try:
        tags = json.loads(body).get("tags")
    except (ValueError, AttributeError) as exc:
        raise RegistryResponseError(f"tag list of {subject} is not a JSON object") from exc
    if tags is None:  # distribution answers null once every tag is deleted
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryResponseError(f"tag list of {subject} has no list of strings in 'tags'")
    return tags
