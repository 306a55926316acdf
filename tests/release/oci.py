"""Write OCI image layouts (image-spec v1.1) by hand, reproducibly.

A :class:`BlobStore` holds every blob of the release once (content-addressed); each repository
gets its own :class:`Layout` directory whose ``blobs/`` are hard links into the store and whose
``index.json`` names each tag with ``org.opencontainers.image.ref.name``, which is what
``skopeo copy oci:DIR:TAG …`` reads. Layers are tar+gzip with sorted entries, parent directories
included, owner 0:0 and every mtime at ``SOURCE_DATE_EPOCH``; JSON is written compactly with
sorted keys. So the same inputs always give the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.release.spec import SOURCE_DATE_EPOCH

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "INDEX_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "BlobStore",
    "Descriptor",
    "Entry",
    "Layer",
    "Layout",
    "canonical_json",
]

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "2019-06-01T21:34:52Z"  # SOURCE_DATE_EPOCH as RFC 3339


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Entry:
    """One tar entry: a file (``data`` or ``source``), a directory or a symlink (``link``)."""

    path: str
    data: bytes | None = None
    source: Path | None = None
    mode: int = 0o644
    link: str | None = None
    is_dir: bool = False


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str  # sha256 of the uncompressed tar


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


def _parents(path: str) -> Iterable[str]:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


@dataclass
class BlobStore:
    root: Path
    _known: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest.removeprefix("sha256:")

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return digest, len(data)

    def put_layer(self, entries: Sequence[Entry]) -> Layer:
        """Write a reproducible tar+gzip layer; parent directories are added automatically."""
        by_path: dict[str, Entry] = {}
        for e in entries:
            path = e.path.strip("/")
            for parent in _parents(path):
                by_path.setdefault(parent, Entry(parent, is_dir=True, mode=0o755))
            by_path[path] = e
        tmp = self.root / f"layer-{os.getpid()}.tmp"
        with tmp.open("wb") as raw:
            outer = _Hashing(raw)
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=outer, mtime=0, compresslevel=6
            ) as gz:
                inner = _Hashing(gz)
                with tarfile.open(fileobj=inner, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    for path in sorted(by_path):
                        self._add(tf, path, by_path[path])
        digest = "sha256:" + outer.sha.hexdigest()
        tmp.replace(self.path(digest))
        return Layer(
            Descriptor(LAYER_MEDIA_TYPE, digest, outer.size), "sha256:" + inner.sha.hexdigest()
        )

    @staticmethod
    def _add(tf: tarfile.TarFile, path: str, e: Entry) -> None:
        info = tarfile.TarInfo(path)
        info.mtime = SOURCE_DATE_EPOCH
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = e.mode
        if e.is_dir:
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        elif e.link is not None:
            info.type = tarfile.SYMTYPE
            info.linkname = e.link
            info.mode = 0o777
            tf.addfile(info)
        elif e.source is not None:
            info.size = e.source.stat().st_size
            with e.source.open("rb") as f:
                tf.addfile(info, f)
        else:
            data = e.data or b""
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

    def put_image(
        self,
        *,
        arch: str,
        layers: Sequence[Layer],
        config: Mapping[str, Any] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Write config + manifest for one platform; returns the manifest descriptor."""
        cfg: dict[str, Any] = {
            "architecture": arch,
            "os": "linux",
            "created": CREATED,
            "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]},
            "history": [{"created": CREATED, "created_by": "tests.release"} for _ in layers],
        }
        if config:
            cfg["config"] = dict(config)
        cdigest, csize = self.put_bytes(canonical_json(cfg))
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": cdigest, "size": csize},
            "layers": [la.descriptor.to_json() for la in layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        mdigest, msize = self.put_bytes(canonical_json(manifest))
        return Descriptor(
            MANIFEST_MEDIA_TYPE, mdigest, msize, platform={"architecture": arch, "os": "linux"}
        )

    def put_index(self, manifests: Sequence[Descriptor]) -> Descriptor:
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [m.to_json() for m in manifests],
        }
        digest, size = self.put_bytes(canonical_json(index))
        return Descriptor(INDEX_MEDIA_TYPE, digest, size)


class Layout:
    """One OCI image layout directory (one repository), tags in ``index.json``."""

    def __init__(self, path: Path, store: BlobStore) -> None:
        self.path = path
        self.store = store
        self._tags: dict[str, Descriptor] = {}
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def _link(self, digest: str, media_type: str) -> None:
        target = self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")
        if not target.exists():
            os.link(self.store.path(digest), target)
        if media_type in (INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE):
            doc = json.loads(target.read_bytes())
            children = [*doc.get("manifests", []), doc.get("config", {}), *doc.get("layers", [])]
            for child in children:
                if child:
                    self._link(child["digest"], child["mediaType"])

    def tag(self, tag: str, descriptor: Descriptor) -> None:
        if tag in self._tags and self._tags[tag].digest != descriptor.digest:
            raise ValueError(f"{self.path.name}:{tag} tagged twice with different content")
        self._link(descriptor.digest, descriptor.media_type)
        self._tags[tag] = descriptor

    def save(self) -> None:
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        manifests = []
        for tag in sorted(self._tags):
            d = self._tags[tag]
            manifests.append(
                Descriptor(d.media_type, d.digest, d.size, annotations={REF_NAME: tag}).to_json()
            )
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
        (self.path / "index.json").write_bytes(canonical_json(index))
