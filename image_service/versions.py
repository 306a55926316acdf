"""Talos version numbers: strict and tolerant semver parsing, precedence, upstream's list rules.

``Version.parse`` accepts strict semver with an optional leading ``v`` (what clients send in
URLs); ``Version.parse_tolerant`` also pads a missing minor or patch (what registry tags may
look like) and returns ``None`` for tags that are no version at all (``latest``). Ordering is
semver precedence; build metadata is ignored. ``offered_versions`` applies the Image Factory's
rules for which tags become offered versions. The builder's quirks compare ``core`` only
(major.minor.patch), like upstream's quirks package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import total_ordering

__all__ = ["InvalidVersion", "Version", "offered_versions"]

_NUM = r"0|[1-9]\d*"
_IDENT = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_STRICT = re.compile(
    rf"v?(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_TOLERANT = re.compile(
    r"v?(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.(?P<patch>\d+))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+(?P<build>[0-9A-Za-z.-]+))?"
)
_PRERELEASE_KINDS = {"alpha", "beta", "rc"}


class InvalidVersion(ValueError):
    """The text is not a semantic version."""


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> Version:
        """Strict semver, optional leading ``v``."""
        match = _STRICT.fullmatch(text)
        if match is None:
            raise InvalidVersion(f"invalid semantic version {text!r}")
        return cls._from_match(match)

    @classmethod
    def parse_tolerant(cls, text: str) -> Version | None:
        match = _TOLERANT.fullmatch(text)
        return cls._from_match(match) if match else None

    @classmethod
    def _from_match(cls, match: re.Match[str]) -> Version:
        pre = match.group("pre")
        return cls(
            int(match.group("major")),
            int(match.group("minor") or 0),
            int(match.group("patch") or 0),
            tuple(pre.split(".")) if pre else (),
            match.group("build") or "",
        )

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def _key(self) -> tuple[object, ...]:
        # A release sorts after its prereleases; numeric identifiers sort before alphanumerics.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (*self.core, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        return text

    @property
    def tag(self) -> str:
        """The ``v``-prefixed form used in tags and API lists."""
        return "v" + str(self)


def _acceptable_prerelease(version: Version) -> bool:
    pre = version.prerelease
    return len(pre) == 2 and pre[0] in _PRERELEASE_KINDS and pre[1].isdigit()


def offered_versions(tags: Iterable[str], minimum: Version) -> list[Version]:
    """Upstream's rules: tolerant parse, ≥ minimum, prereleases only of the newest minor, sorted."""
    parsed = {v for tag in tags if (v := Version.parse_tolerant(tag)) is not None}
    if not parsed:
        return []
    newest = max(parsed)
    offered = [
        v
        for v in parsed
        if v >= minimum
        and (
            not v.is_prerelease
            or ((v.major, v.minor) == (newest.major, newest.minor) and _acceptable_prerelease(v))
        )
    ]
    return sorted(offered)
