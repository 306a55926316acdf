"""Test helpers: a hand-written OCI image layout, skopeo, and small real images.

The layout is written with plain ``json``/``hashlib``/``tarfile`` (not with the code under
test), so pushing it with skopeo and reading it with ``RegistryClient`` is an independent
check of the client.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_gz(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """A reproducible gzip-compressed tar of ``files``; returns (compressed, uncompressed)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), raw.getvalue()


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class OciLayout:
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._refs: list[dict[str, Any]] = []

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = sha256(data)
        (self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(
        self, files: dict[str, bytes], os: str = "linux", arch: str = "amd64"
    ) -> dict[str, Any]:
        """A one-layer image; returns the manifest descriptor (with its platform)."""
        layer, diff = tar_gz(files)
        config = dumps(
            {
                "architecture": arch,
                "os": os,
                "rootfs": {"type": "layers", "diff_ids": [sha256(diff)]},
            }
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.blob(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [self.blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
        }
        return self.blob(dumps(manifest), OCI_MANIFEST) | {
            "platform": {"os": os, "architecture": arch}
        }

    def index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        data = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.blob(dumps(data), OCI_INDEX)

    def tag(self, descriptor: dict[str, Any], name: str) -> None:
        ref = {k: v for k, v in descriptor.items() if k != "platform"}
        self._refs.append(ref | {"annotations": {"org.opencontainers.image.ref.name": name}})
        (self.root / "index.json").write_bytes(
            dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self._refs})
        )

    def layer_bytes(self, manifest: dict[str, Any]) -> bytes:
        """The bytes of the first layer of the manifest ``manifest`` describes."""
        doc = json.loads(self.read(manifest["digest"]))
        return self.read(doc["layers"][0]["digest"])

    def read(self, digest: str) -> bytes:
        return (self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def skopeo(*args: str) -> str:
    """Run skopeo (plain HTTP to the local registry) and return its stdout."""
    result = subprocess.run(
        ["skopeo", *args],
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    return result.stdout
