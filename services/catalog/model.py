"""The catalogue files of a Talos release, parsed into records (pure, no I/O).

* ``extensions:<v>`` holds ``/image-digests`` (one ``<registry>/<path>:<tag>@sha256:<hex>`` per
  line) and ``/descriptions.yaml`` (author and description keyed by the whole line).
  ``parse_extensions`` turns them into ``Extension`` records whose ``ref`` names the configured
  registry instead of the one written in the file (reference/api.md §11.2).
* ``overlays:<v>`` holds ``/overlays.yaml`` (``overlays: [{name, image, digest}]``);
  ``parse_overlays`` keeps the reference exactly as written and derives the repository path.

Malformed catalogues raise ``CatalogFormatError`` naming the file and the offending line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

__all__ = [
    "CatalogFormatError",
    "Extension",
    "Overlay",
    "parse_extensions",
    "parse_overlays",
    "split_reference",
]

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_PATH_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class CatalogFormatError(ValueError):
    """A catalogue file does not have the expected format."""


@dataclass(frozen=True)
class Extension:
    name: str
    ref: str
    digest: str
    author: str
    description: str


@dataclass(frozen=True)
class Overlay:
    name: str
    image: str
    ref: str
    digest: str


@dataclass(frozen=True)
class Reference:
    registry: str
    path: str
    tag: str
    digest: str


def split_reference(text: str) -> Reference:
    """Split ``registry/path[:tag][@digest]``; the first component is always the registry."""
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST_RE.fullmatch(digest):
        raise CatalogFormatError(f"invalid digest in image reference {text!r}")
    registry, slash, remainder = rest.partition("/")
    if not slash:
        raise CatalogFormatError(f"image reference {text!r} has no registry part")
    path, colon, tag = remainder.rpartition(":")
    if not colon:
        path, tag = remainder, ""
    if not _PATH_RE.fullmatch(path) or (tag and not _TAG_RE.fullmatch(tag)):
        raise CatalogFormatError(f"invalid image reference {text!r}")
    return Reference(registry, path, tag, digest)


def _descriptions(text: str) -> dict[str, dict[str, str]]:
    if not text.strip():
        return {}
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogFormatError(f"descriptions.yaml is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise CatalogFormatError("descriptions.yaml must be a mapping")
    result: dict[str, dict[str, str]] = {}
    for key, value in loaded.items():
        if isinstance(value, dict):
            result[str(key)] = {
                field: str(value.get(field) or "") for field in ("author", "description")
            }
    return result


def parse_extensions(image_digests: str, descriptions: str, registry: str) -> list[Extension]:
    """The API list of extensions, in ``image-digests`` order, refs on ``registry``."""
    described = _descriptions(descriptions)
    extensions: list[Extension] = []
    for number, raw in enumerate(image_digests.splitlines(), start=1):
        line = raw.strip()
        if not line or "@" not in line:
            continue
        try:
            ref = split_reference(line)
        except CatalogFormatError as exc:
            raise CatalogFormatError(f"image-digests line {number}: {exc}") from None
        info = described.get(line, {})
        extensions.append(
            Extension(
                name=ref.path,
                ref=f"{registry}/{ref.path}:{ref.tag}",
                digest=ref.digest,
                author=info.get("author", ""),
                description=info.get("description", ""),
            )
        )
    return extensions


def parse_overlays(text: str) -> list[Overlay]:
    try:
        loaded = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise CatalogFormatError(f"overlays.yaml is not valid YAML: {exc}") from exc
    entries = (loaded or {}).get("overlays") if isinstance(loaded, dict) else None
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise CatalogFormatError("overlays.yaml: 'overlays' must be a list")
    overlays: list[Overlay] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"name", "image", "digest"} <= set(entry):
            raise CatalogFormatError(f"overlays.yaml entry {index} needs name, image and digest")
        image = str(entry["image"])
        digest = str(entry["digest"])
        if not _DIGEST_RE.fullmatch(digest):
            raise CatalogFormatError(f"overlays.yaml entry {index}: invalid digest {digest!r}")
        overlays.append(
            Overlay(
                name=str(entry["name"]),
                image=split_reference(image).path,
                ref=image,
                digest=digest,
            )
        )
    return overlays
