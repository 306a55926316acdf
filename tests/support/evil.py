"""Malicious extension images, pushed into a real registry next to the test release.

``push_evil_release(release, registry_host, canary)`` pushes the test release, then one
single-layer extension image per attack (``..`` entry, absolute path, symlink escape, hardlink
escape, device node) and rewrites ``extensions:<v>`` so the catalogue lists them like official
extensions. The attacks aim at ``canary`` (an absolute path outside every work dir) so a test
can check that nothing escaped.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from pathlib import Path

from image_service.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
    RegistryClient,
)
from tests.release import Release, push_release

__all__ = ["ATTACKS", "offending_entry", "push_evil_release"]

MANIFEST_YAML = (
    "version: v1alpha1\nmetadata:\n  name: {name}\n  version: 1.0.0\n  author: Mallory\n"
    "  description: evil\n  compatibility:\n    talos:\n      version: '>= v1.0.0'\n"
)

ATTACKS = ("evil-dotdot", "evil-absolute", "evil-symlink", "evil-hardlink", "evil-device")


def offending_entry(attack: str, canary: Path) -> str:
    """The layer entry a build must refuse for ``attack`` (the error names it)."""
    return {
        "evil-dotdot": "rootfs/" + "../" * 12 + str(canary).lstrip("/"),
        "evil-absolute": str(canary),
        "evil-symlink": "rootfs/usr/local/link",
        "evil-hardlink": "rootfs/usr/local/hard",
        "evil-device": "rootfs/usr/local/null",
    }[attack]


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o644
    return info


def _layer(attack: str, canary: Path) -> bytes:
    raw = io.BytesIO()
    manifest = MANIFEST_YAML.format(name=attack).encode()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        archive.addfile(_info("manifest.yaml", size=len(manifest)), io.BytesIO(manifest))
        for directory in ("rootfs", "rootfs/usr", "rootfs/usr/local"):
            info = _info(directory, tarfile.DIRTYPE)
            info.mode = 0o755
            archive.addfile(info)
        payload = b"pwned\n"
        if attack == "evil-dotdot":
            name = "rootfs/" + "../" * 12 + str(canary).lstrip("/")
            archive.addfile(_info(name, size=len(payload)), io.BytesIO(payload))
        elif attack == "evil-absolute":
            archive.addfile(_info(str(canary), size=len(payload)), io.BytesIO(payload))
        elif attack == "evil-symlink":
            link = _info("rootfs/usr/local/link", tarfile.SYMTYPE)
            link.linkname = str(canary.parent)
            archive.addfile(link)
            name = f"rootfs/usr/local/link/{canary.name}"
            archive.addfile(_info(name, size=len(payload)), io.BytesIO(payload))
        elif attack == "evil-hardlink":
            hard = _info("rootfs/usr/local/hard", tarfile.LNKTYPE)
            hard.linkname = str(canary)
            archive.addfile(hard)
        elif attack == "evil-device":
            node = _info("rootfs/usr/local/null", tarfile.CHRTYPE)
            node.devmajor, node.devminor = 1, 3
            archive.addfile(node)
    return raw.getvalue()


async def _push_image(client: RegistryClient, repo: str, tag: str, layer: bytes) -> str:
    layer_desc = await client.push_blob(repo, layer, OCI_LAYER_TAR)
    manifests = []
    for arch in ("amd64", "arm64"):
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer_desc.digest]},
            }
        ).encode()
        config_desc = await client.push_blob(repo, config, OCI_CONFIG)
        raw = Manifest(config=config_desc, layers=(layer_desc,)).encode()
        digest = await client.put_manifest(
            repo, "sha256:" + hashlib.sha256(raw).hexdigest(), raw, OCI_MANIFEST
        )
        manifests.append(
            Descriptor(OCI_MANIFEST, digest, len(raw), platform=Platform("linux", arch))
        )
    index = Index(manifests=tuple(manifests)).encode()
    return await client.put_manifest(repo, tag, index, OCI_INDEX)


async def _push_evil(release: Release, registry: str, canary: Path, version: str) -> None:
    async with RegistryClient(registry, insecure=True) as client:
        lines = [ext.catalogue_line() for ext in release.version(version).extensions]
        for attack in ATTACKS:
            digest = await _push_image(client, f"siderolabs/{attack}", "v1", _layer(attack, canary))
            lines.append(f"ghcr.io/siderolabs/{attack}:v1@{digest}")
        files = {"image-digests": ("\n".join(lines) + "\n").encode(), "descriptions.yaml": b"{}\n"}
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as archive:
            for name, content in files.items():
                archive.addfile(_info(name, size=len(content)), io.BytesIO(content))
        await _push_image(client, "siderolabs/extensions", version, raw.getvalue())


def push_evil_release(release: Release, registry: str, canary: Path, version: str) -> None:
    """Push the release, then the attack images and a catalogue of ``version`` listing them."""
    push_release(release, registry)
    asyncio.run(_push_evil(release, registry, canary, version))
