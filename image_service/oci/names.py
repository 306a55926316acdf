"""Validation of everything that ends up in a registry URL, and image references.

The client never builds a URL from a string these functions have not accepted: registry hosts
(``HOST[:PORT]``), repository names, tags and digests follow the grammar of the distribution
project's ``reference`` package. ``ImageReference`` parses and prints full references such as
``ghcr.io/siderolabs/imager:v1.10.0@sha256:…`` and can point them at another registry (the
catalog rewrites ``ghcr.io`` to the configured mirror).

Only ``sha256`` digests are accepted: it is the only algorithm registries use in practice and
the only one the content-addressed cache stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from image_service.oci.errors import InvalidReference

__all__ = [
    "ImageReference",
    "is_digest",
    "validate_digest",
    "validate_reference",
    "validate_registry",
    "validate_repository",
    "validate_tag",
]

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?"
)
_REPOSITORY_MAX = 255


def validate_registry(registry: str) -> str:
    """Return ``registry`` if it is ``HOST[:PORT]`` (no scheme, no path)."""
    match = _HOST_RE.fullmatch(registry)
    port = match.group("port") if match else None
    if match is None or (port is not None and not 0 < int(port) < 65536):
        raise InvalidReference(
            f"invalid registry {registry!r}: expected HOST[:PORT] such as ghcr.io or "
            "127.0.0.1:5000, without a scheme or path"
        )
    return registry


def validate_repository(repository: str) -> str:
    """Return ``repository`` if it is a valid distribution repository name."""
    if len(repository) > _REPOSITORY_MAX or not _REPOSITORY_RE.fullmatch(repository):
        raise InvalidReference(
            f"invalid repository name {repository!r}: use lowercase path components of "
            "[a-z0-9] joined by '.', '_', '__' or '-', separated by '/' (at most 255 characters)"
        )
    return repository


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``)."""
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReference(
            f"invalid tag {tag!r}: a tag is 1-128 characters of [A-Za-z0-9_.-] "
            "and must not start with '.' or '-'"
        )
    return tag


def is_digest(reference: str) -> bool:
    """True if ``reference`` is a well-formed ``sha256:<64 hex>`` digest."""
    return _DIGEST_RE.fullmatch(reference) is not None


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:`` followed by 64 lowercase hex digits."""
    if not is_digest(digest):
        raise InvalidReference(
            f"invalid digest {digest!r}: expected 'sha256:' followed by 64 lowercase hex digits"
        )
    return digest


def validate_reference(reference: str) -> str:
    """Return ``reference`` if it is a valid tag or digest."""
    if ":" in reference:  # tags cannot contain ':', so this must be a digest
        return validate_digest(reference)
    return validate_tag(reference)


@dataclass(frozen=True)
class ImageReference:
    """A full image reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        validate_registry(self.registry)
        validate_repository(self.repository)
        if self.tag is not None:
            validate_tag(self.tag)
        if self.digest is not None:
            validate_digest(self.digest)
        if self.tag is None and self.digest is None:
            raise InvalidReference(
                f"image reference {self.registry}/{self.repository} names neither a tag nor a "
                "digest; add ':TAG' or '@sha256:…'"
            )

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse ``HOST[:PORT]/repo[:tag][@sha256:…]``; the registry host is required."""
        rest, _, digest = text.partition("@")
        host, slash, path = rest.partition("/")
        if not slash or not ("." in host or ":" in host or host == "localhost"):
            raise InvalidReference(
                f"invalid image reference {text!r}: it must start with a registry host, "
                "e.g. ghcr.io/siderolabs/imager:v1.10.0"
            )
        repository, colon, tag = path.rpartition(":")
        if not colon or "/" in tag:
            repository, tag = path, ""
        return cls(host, repository, tag or None, digest or None)

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        return self.digest or self.tag or ""

    def with_registry(self, registry: str) -> ImageReference:
        """The same image in another registry (e.g. a local mirror of ghcr.io)."""
        return ImageReference(registry, self.repository, self.tag, self.digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text
