"""Behaviour that differs between upstream YAML library versions (``schematic.md`` §4.9).

Upstream switched YAML libraries several times (yaml.v3, go-yaml v4 rc.3/rc.4, v4 rc.6+). For
ordinary documents they agree; for a handful of edge cases they do not, and there are no
upstream ID vectors for those. Every such decision is made here, keyed by :data:`TARGET`, so the
service can follow upstream if it switches again. The default is the current upstream (rc.6+).
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from image_service.flavor._resolve import is_base60_float, is_old_bool

__all__ = [
    "TARGET",
    "Upstream",
    "literal_block_allowed",
    "options_timestamps_are_times",
    "timestamp_into_string_is_error",
    "yaml11_string_style",
]


class Upstream(Enum):
    """The upstream YAML library generations whose edge cases differ."""

    YAML_V3 = "yaml.v3 (until 2025-11)"
    V4_RC3 = "go-yaml v4 rc.3/rc.4 (2025-11 to 2026-08)"
    V4_CURRENT = "go-yaml v4 rc.6+ (from 2026-08)"


TARGET = Upstream.V4_CURRENT

# Go's unicode.IsSpace: the Latin-1 spaces plus the Unicode White_Space property.
_GO_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def yaml11_string_style(text: str, target: Upstream = TARGET) -> Literal["single", "double"] | None:
    """How a single-line string that only YAML 1.1 would misread must be quoted.

    That is the YAML 1.1 boolean words (``yes``, ``Off``, ...), base-60 numbers (``1:30``) and
    the merge key ``<<``. Returns ``None`` when the string needs nothing special on this account.
    """
    yaml11 = is_old_bool(text) or is_base60_float(text)
    if target is Upstream.V4_CURRENT:
        return "single" if yaml11 or text == "<<" else None
    if target is Upstream.V4_RC3:
        return "double" if yaml11 or text == "<<" else None
    return "double" if yaml11 else None  # yaml.v3 left "<<" plain (a bug: it reads back as merge)


def literal_block_allowed(text: str, target: Upstream = TARGET) -> bool:
    """Whether a string containing a line feed may use a literal block at all.

    go-yaml v4 writes whitespace-only and one-byte multi-line strings (``"\\n"``) double-quoted;
    yaml.v3 tried a literal block for every multi-line string.
    """
    if target is Upstream.YAML_V3:
        return True
    return len(text.encode("utf-8")) >= 2 and any(ch not in _GO_SPACES for ch in text)


def timestamp_into_string_is_error(target: Upstream = TARGET) -> bool:
    """Whether an unquoted timestamp (``value: 2024-01-02``) in a string field is rejected."""
    return target is Upstream.V4_CURRENT


def options_timestamps_are_times(target: Upstream = TARGET) -> bool:
    """Whether unquoted timestamps in ``overlay.options`` become times (written in RFC 3339)."""
    return target is not Upstream.YAML_V3
