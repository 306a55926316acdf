"""Multi-arch installer images for the OCI registry frontend (api.md §10).

The registry frontend is stateless, so the builder keeps what a registry needs — every blob of
an image by digest, plus which blobs each repository holds — in the asset store:

* **Repositories** are ``<image>/<flavor ID>``; :func:`parse_image` maps the image name to a
  platform and the Secure Boot flag (api.md §10.2), with upstream's ``invalid image: <name>``.
* **Building** (``InstallerImages.build``): the flavor is checked first, then the image name,
  then the version (``latest`` is the newest stable one). A cached image is answered from its
  *image record* (a small JSON blob tagged by a key over image, flavor, version, the Secure
  Boot signing identity and the errata salts), so a re-pull costs a tag lookup. Otherwise
  both arches' ``<platform>-installer-<arch>[-secureboot].tar`` assets are built **in
  parallel** by the pipeline (each once, by its own build key), then one conversion per
  image key (the scheduler's single flight) turns the two docker-archives into blobs: layers
  and configs as they are in the archive, an OCI manifest per arch and an OCI index
  (linux/amd64, then linux/arm64). The record is committed last, so a visible record always
  has all its blobs. Like upstream, a built tag is not rebuilt when its inputs are re-tagged;
  a new errata salt rebuilds it.
* **Membership**: each blob gets a *member record* tagged by a key over (image, flavor,
  digest) holding its descriptor, so ``stat`` answers media type and size for exactly the
  blobs of that repository, and the bytes are read like any asset (``ReadAsset``).

Errors, in the builder's tree: ``InvalidImage`` (400, upstream's ``invalid image: <name>``),
``TagUnknown`` and ``BlobUnknown`` (404). ``InstallerImagesServicer`` is the gRPC side, a mixin
for ``BuilderServicer``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import grpc.aio

from image_service.errors import InvalidInput, NotFound, Unavailable, Unsupported
from image_service.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_LAYER_TAR_GZIP,
    OCI_LAYER_TAR_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
)
from image_service.proto import builder_pb2, catalog_pb2, catalog_pb2_grpc
from image_service.rpc import handler, stream_handler
from image_service.storage import BlobInfo, BlobStore
from image_service.storage.base import check_digest
from image_service.versions import InvalidVersion, Version
from services.builder.errors import BuildError, BuildFailed
from services.builder.inputs.catalogs import Peers, VersionUnknown
from services.builder.metrics import BuilderMetrics
from services.builder.pipeline import ERRATA_SALTS, Pipeline
from services.builder.scheduler import ASSET_NAMESPACE, Scheduler
from services.builder.talos.platforms import PLATFORMS

__all__ = [
    "ARCHES",
    "IMAGE_KIND",
    "BlobUnknown",
    "BuiltImage",
    "InstallerImages",
    "InstallerImagesServicer",
    "InstallerRepo",
    "InvalidImage",
    "TagUnknown",
    "convert_archive",
    "parse_image",
]

ARCHES = ("amd64", "arm64")
IMAGE_KIND = "installer-image"
# Add a line to rebuild every registry image (on top of the pipeline's errata salts).
_IMAGE_SALTS = ("image-service registry image v1",)
_RECORD_TYPE = "application/vnd.image-service.registry-record+json"
_MAX_RECORD_BYTES = 64 << 10
_MAX_JSON_MEMBER = 4 << 20
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

Progress = Callable[[str, str], None]


class InvalidImage(BuildError, InvalidInput):
    """The repository's image name is not an installer image."""

    def __init__(self, image: str) -> None:
        super().__init__(f"invalid image: {image}")  # upstream's text, unquoted


class TagUnknown(BuildError, NotFound):
    """A tag that is never built (no leading ``v``), or no stable version for ``latest``."""


class BlobUnknown(BuildError, NotFound):
    """The repository holds no blob with that digest."""


@dataclass(frozen=True)
class InstallerRepo:
    image: str
    platform: str
    secureboot: bool

    def asset_path(self, arch: str) -> str:
        """The builder path of this repository's installer tarball for ``arch``."""
        suffix = "-secureboot" if self.secureboot else ""
        prefix = "" if self.image.startswith("installer") else f"{self.platform}-"
        return f"{prefix}installer-{arch}{suffix}.tar"


def parse_image(image: str) -> InstallerRepo:
    """``installer``, ``installer-secureboot``, ``<platform>-installer[-secureboot]`` (api.md
    §10.2, suffixes tried in that order). Unlike upstream, the platform must be in the platform
    table (api.md §15.4), so a typo is ``invalid image`` instead of a failed build."""
    if image in ("installer", "installer-secureboot"):
        return InstallerRepo(image, "metal", image.endswith("-secureboot"))
    for suffix, secureboot in (("-installer-secureboot", True), ("-installer", False)):
        if image.endswith(suffix):
            platform = image.removesuffix(suffix)
            if platform in PLATFORMS:
                return InstallerRepo(image, platform, secureboot)
            break
    raise InvalidImage(image)


def _key(**parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _image_key(image: str, flavor_id: str, version: Version, signing: str) -> str:
    salts = [*ERRATA_SALTS, *_IMAGE_SALTS]
    return _key(
        kind=IMAGE_KIND,
        image=image,
        flavor=flavor_id,
        version=version.tag,
        signing=signing,
        salts=salts,
    )


def _member_key(image: str, flavor_id: str, digest: str) -> str:
    return _key(kind="registry-blob", image=image, flavor=flavor_id, digest=digest)


def _descriptor_json(desc: Descriptor) -> bytes:
    record = {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}
    return json.dumps(record, separators=(",", ":")).encode()


def _parse_descriptor(raw: bytes) -> Descriptor:
    data = json.loads(raw)
    return Descriptor(str(data["mediaType"]), check_digest(data["digest"]), int(data["size"]))


# -- docker-archive → OCI blobs ------------------------------------------------------------------


@dataclass(frozen=True)
class ConvertedBlob:
    path: Path
    descriptor: Descriptor


@dataclass(frozen=True)
class ConvertedImage:
    """One arch's image: its manifest (bytes) and the config and layer blobs it names."""

    manifest: bytes
    blobs: tuple[ConvertedBlob, ...]


def _copy_member(source: IO[bytes], target: Path) -> BlobInfo:
    hasher, size = hashlib.sha256(), 0
    with target.open("wb") as out:
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return BlobInfo("sha256:" + hasher.hexdigest(), size)


def _layer_media_type(path: Path) -> str:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic.startswith(_GZIP_MAGIC):
        return OCI_LAYER_TAR_GZIP
    if magic == _ZSTD_MAGIC:
        return OCI_LAYER_TAR_ZSTD
    return OCI_LAYER_TAR


def convert_archive(archive: Path, work: Path) -> ConvertedImage:
    """Split a docker-archive (``manifest.json`` + config + layers) into OCI blobs in ``work``.

    The archive is read once, streaming: each member is copied to its own file while hashed.
    Layer media types follow the blobs' compression. Raises ``BuildFailed``.
    """
    work.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, BlobInfo]] = {}
    try:
        with tarfile.open(archive, mode="r|") as tar:
            for number, info in enumerate(tar):
                source = tar.extractfile(info) if info.isfile() else None
                if source is None or info.name in files:
                    continue
                path = work / f"member-{number}"
                files[info.name] = (path, _copy_member(source, path))
    except (tarfile.TarError, OSError) as exc:
        raise BuildFailed(f"the installer archive {archive.name} is unreadable: {exc}") from exc

    def member(name: object, what: str) -> tuple[Path, BlobInfo]:
        found = files.get(name) if isinstance(name, str) else None
        if found is None:
            raise BuildFailed(f"the installer archive {archive.name} lacks its {what} {name!r}")
        return found

    manifest_path, manifest_info = member("manifest.json", "manifest")
    if manifest_info.size > _MAX_JSON_MEMBER:
        raise BuildFailed(f"the installer archive {archive.name} has a huge manifest.json")
    entries = json.loads(manifest_path.read_bytes())
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise BuildFailed(f"the installer archive {archive.name} must hold exactly one image")
    entry: dict[str, Any] = entries[0]
    config_path, config_info = member(entry.get("Config"), "config")
    config = ConvertedBlob(
        config_path, Descriptor(OCI_CONFIG, config_info.digest, config_info.size)
    )
    layers = []
    for name in entry.get("Layers") or []:
        path, blob = member(name, "layer")
        layers.append(
            ConvertedBlob(path, Descriptor(_layer_media_type(path), blob.digest, blob.size))
        )
    if not layers:
        raise BuildFailed(f"the installer archive {archive.name} has no layers")
    manifest = Manifest(config.descriptor, tuple(layer.descriptor for layer in layers))
    return ConvertedImage(manifest.encode(), (config, *layers))


# -- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImage:
    index: Descriptor
    version: Version
    cached: bool


class InstallerImages:
    """Build, find and describe installer images of registry repositories."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        peers: Peers,
        catalog: grpc.aio.Channel,
        scheduler: Scheduler,
        store: BlobStore,
        metrics: BuilderMetrics,
        signing_identity: str | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._signing = signing_identity or ""
        self._peers = peers
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(catalog)
        self._scheduler = scheduler
        self._store = store
        self._metrics = metrics

    async def check(self, flavor_id: str, image: str) -> InstallerRepo:
        """The repository ``<image>/<flavor_id>``: flavor first (404), then the name (400)."""
        await self._peers.flavor(flavor_id)
        return parse_image(image)

    async def build(self, flavor_id: str, image: str, tag: str, progress: Progress) -> BuiltImage:
        """The image index for ``tag`` (``v<version>`` or ``latest``), built on first use."""
        repo = await self.check(flavor_id, image)
        version = await self._version(tag)
        key = _image_key(image, flavor_id, version, self._signing if repo.secureboot else "")
        hit = await self._scheduler.cached(key)
        if hit is not None:
            self._metrics.cache_hits.labels(IMAGE_KIND).inc()
            return BuiltImage(await self._index(hit.digest), version, cached=True)
        progress("building", f"installer images for {image}:{version.tag}")
        tars = await self._build_arches(flavor_id, version, repo, progress)
        progress("converting", "storing the image blobs")
        built = await self._scheduler.get_or_build(
            key, IMAGE_KIND, lambda work: self._convert(repo, flavor_id, tars, work)
        )
        return BuiltImage(await self._index(built.info.digest), version, cached=built.cached)

    async def stat(self, flavor_id: str, image: str, digest: str) -> Descriptor:
        """Media type and size of a blob of the repository; ``BlobUnknown`` if it has none."""
        try:
            check_digest(digest)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        unknown = BlobUnknown(f"blob {digest} is unknown to repository {image}/{flavor_id}")
        record = await self._store.resolve_tag(
            ASSET_NAMESPACE, _member_key(image, flavor_id, digest)
        )
        if record is None:
            raise unknown
        raw = await self._store.get_bytes(ASSET_NAMESPACE, record, max_bytes=_MAX_RECORD_BYTES)
        descriptor = _parse_descriptor(raw)
        if await self._store.stat(ASSET_NAMESPACE, descriptor.digest) is None:
            raise unknown
        return descriptor

    async def _version(self, tag: str) -> Version:
        if tag == "latest":
            try:
                answer = await self._catalog.ListVersions(catalog_pb2.ListVersionsRequest())
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise Unavailable(f"catalog service: {exc.details()}") from exc
                raise BuildFailed(f"catalog service failed: {exc.code().name}") from exc
            stable = []
            for text in answer.versions:
                try:
                    stable.append(Version.parse(text))
                except InvalidVersion:
                    continue
            stable = [v for v in stable if not v.is_prerelease]
            if not stable:
                raise VersionUnknown("no stable Talos version is available for latest")
            return max(stable)
        if not tag.startswith("v"):
            raise TagUnknown(
                f"tag {tag!r} is never built: installer tags are Talos versions with a leading "
                '"v", such as "v1.11.3"'
            )
        return await self._peers.version(tag)

    async def _index(self, record_digest: str) -> Descriptor:
        raw = await self._store.get_bytes(
            ASSET_NAMESPACE, record_digest, max_bytes=_MAX_RECORD_BYTES
        )
        return _parse_descriptor(raw)

    async def _build_arches(
        self, flavor_id: str, version: Version, repo: InstallerRepo, progress: Progress
    ) -> dict[str, BlobInfo]:
        """Both arches' installer tarballs, in parallel (api.md §15.10)."""

        async def one(arch: str) -> BlobInfo:
            def forward(stage: str, message: str) -> None:
                progress(stage, f"{arch}: {message}")

            result = await self._pipeline.build(
                flavor_id, version.tag, repo.asset_path(arch), forward
            )
            return result.built.info

        results = await asyncio.gather(*(one(arch) for arch in ARCHES), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return {arch: r for arch, r in zip(ARCHES, results, strict=True) if isinstance(r, BlobInfo)}

    async def _convert(
        self, repo: InstallerRepo, flavor_id: str, tars: dict[str, BlobInfo], work: Path
    ) -> Path:
        """Store every blob of both arches, the manifests, the index and the member records;
        return the image record for the scheduler to commit under the image key."""
        manifests = []
        for arch in ARCHES:
            archive = work / f"{arch}.tar"
            with archive.open("wb") as out:
                async for chunk in self._store.read(ASSET_NAMESPACE, tars[arch].digest):
                    await asyncio.to_thread(out.write, chunk)
            image = await asyncio.to_thread(convert_archive, archive, work / arch)
            await asyncio.to_thread(archive.unlink)
            for blob in image.blobs:
                await self._store.put_file(
                    ASSET_NAMESPACE, blob.path, media_type=blob.descriptor.media_type
                )
                await self._remember(repo.image, flavor_id, blob.descriptor)
            manifest = await self._put_json(repo.image, flavor_id, image.manifest, OCI_MANIFEST)
            manifests.append(
                Descriptor(
                    manifest.media_type,
                    manifest.digest,
                    manifest.size,
                    platform=Platform("linux", arch),
                )
            )
        index = await self._put_json(
            repo.image, flavor_id, Index(tuple(manifests)).encode(), OCI_INDEX
        )
        record = work / "image-record.json"
        record.write_bytes(_descriptor_json(index))
        return record

    async def _put_json(
        self, image: str, flavor_id: str, data: bytes, media_type: str
    ) -> Descriptor:
        digest = await self._store.put_bytes(ASSET_NAMESPACE, data, media_type=media_type)
        descriptor = Descriptor(media_type, digest, len(data))
        await self._remember(image, flavor_id, descriptor)
        return descriptor

    async def _remember(self, image: str, flavor_id: str, descriptor: Descriptor) -> None:
        await self._store.put_bytes(
            ASSET_NAMESPACE,
            _descriptor_json(descriptor),
            media_type=_RECORD_TYPE,
            tag=_member_key(image, flavor_id, descriptor.digest),
        )


# -- gRPC ------------------------------------------------------------------------------------------

_CheckContext = grpc.aio.ServicerContext[
    builder_pb2.InstallerRepositoryRequest, builder_pb2.InstallerRepository
]
_BuildContext = grpc.aio.ServicerContext[
    builder_pb2.BuildInstallerImageRequest, builder_pb2.InstallerImageEvent
]
_StatContext = grpc.aio.ServicerContext[
    builder_pb2.StatRegistryBlobRequest, builder_pb2.RegistryBlob
]


def _blob_message(descriptor: Descriptor) -> builder_pb2.RegistryBlob:
    return builder_pb2.RegistryBlob(
        digest=descriptor.digest, size=descriptor.size, media_type=descriptor.media_type
    )


class InstallerImagesServicer:
    """The registry RPCs of ``BuilderService``; mix into ``BuilderServicer`` (before the
    generated base) and set ``installer_images``."""

    installer_images: InstallerImages | None = None

    def _images(self) -> InstallerImages:
        if self.installer_images is None:
            raise Unsupported("this builder does not serve installer images to registries")
        return self.installer_images

    @handler
    async def CheckInstallerRepository(
        self, request: builder_pb2.InstallerRepositoryRequest, context: _CheckContext
    ) -> builder_pb2.InstallerRepository:
        repo = await self._images().check(request.flavor_id, request.image)
        return builder_pb2.InstallerRepository(platform=repo.platform, secureboot=repo.secureboot)

    @stream_handler
    async def BuildInstallerImage(
        self, request: builder_pb2.BuildInstallerImageRequest, context: _BuildContext
    ) -> AsyncIterator[builder_pb2.InstallerImageEvent]:
        images = self._images()
        events: asyncio.Queue[builder_pb2.Progress] = asyncio.Queue()

        def progress(stage: str, message: str) -> None:
            events.put_nowait(builder_pb2.Progress(stage=stage, message=message))

        task = asyncio.create_task(
            images.build(request.flavor_id, request.image, request.version, progress)
        )
        try:
            while not task.done():
                getter = asyncio.create_task(events.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield builder_pb2.InstallerImageEvent(progress=getter.result())
                else:
                    getter.cancel()
            while not events.empty():
                yield builder_pb2.InstallerImageEvent(progress=events.get_nowait())
            built = task.result()
        finally:
            task.cancel()
        yield builder_pb2.InstallerImageEvent(
            image=builder_pb2.InstallerImage(
                index=_blob_message(built.index), version=built.version.tag, cached=built.cached
            )
        )

    @handler
    async def StatRegistryBlob(
        self, request: builder_pb2.StatRegistryBlobRequest, context: _StatContext
    ) -> builder_pb2.RegistryBlob:
        descriptor = await self._images().stat(request.flavor_id, request.image, request.digest)
        return _blob_message(descriptor)
