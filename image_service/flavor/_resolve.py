"""go-yaml's scalar resolution: what an unquoted scalar means (``schematic.md`` §4.5 step B, §8).

The same rules serve both directions. The decoder asks "what is this plain scalar?" (to type
``overlay.options`` values and to check ``meta[].key``); the emitter asks "would this string,
written plain, read back as something else?" (then it must be quoted). PyYAML's own resolver
follows YAML 1.1 (``yes`` is a bool, ``0x1f`` is 31, ...) and must not be used for either.

The functions reproduce Go behaviour that Python does differently: ``strconv.ParseInt`` with base
0 (legacy ``0777`` octal, ``0b``/``0o``/``0x`` prefixes, int64 range, then uint64),
``strconv.ParseFloat`` (overflow is an error, not infinity), and ``time.Parse`` with the four
layouts go-yaml accepts for timestamps.
"""

from __future__ import annotations

import functools
import math
import re
from typing import NamedTuple

__all__ = [
    "BINARY",
    "BOOL",
    "FLOAT",
    "INT",
    "MAP",
    "MERGE",
    "NULL",
    "SEQ",
    "STR",
    "TIMESTAMP",
    "ResolveError",
    "Resolved",
    "is_base60_float",
    "is_old_bool",
    "parse_timestamp",
    "resolve",
]

STR = "!!str"
INT = "!!int"
FLOAT = "!!float"
BOOL = "!!bool"
NULL = "!!null"
TIMESTAMP = "!!timestamp"
BINARY = "!!binary"
MERGE = "!!merge"
SEQ = "!!seq"
MAP = "!!map"

_RESOLVABLE = frozenset({"", STR, BOOL, INT, FLOAT, TIMESTAMP})

_MAX_INT64 = (1 << 63) - 1
_MAX_UINT64 = (1 << 64) - 1

_RESOLVE_MAP: dict[str, tuple[str, object]] = {
    **{text: (BOOL, True) for text in ("true", "True", "TRUE")},
    **{text: (BOOL, False) for text in ("false", "False", "FALSE")},
    **{text: (NULL, None) for text in ("", "~", "null", "Null", "NULL")},
    **{text: (FLOAT, math.nan) for text in (".nan", ".NaN", ".NAN")},
    **{text: (FLOAT, math.inf) for text in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{text: (FLOAT, -math.inf) for text in ("-.inf", "-.Inf", "-.INF")},
}

# First-character hints of go-yaml's resolveTable; anything else is always a string.
_HINT_SIGN = "S"
_HINT_DIGIT = "D"
_HINT_MAP = "M"
_HINT_DOT = "."


def _hint(text: str) -> str:
    if not text:
        return _HINT_MAP  # the empty string is looked up (it is null)
    ch = text[0]
    if ch in "+-":
        return _HINT_SIGN
    if "0" <= ch <= "9":
        return _HINT_DIGIT
    if ch in "yYnNtTfFoO~":
        return _HINT_MAP
    if ch == ".":
        return _HINT_DOT
    return ""


_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_OLD_BOOLS = frozenset(
    {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
    | {"n", "N", "no", "No", "NO", "off", "Off", "OFF"}
)


class Resolved(NamedTuple):
    """A resolved scalar: its short tag and its value (``None`` for null)."""

    tag: str
    value: object


class ResolveError(ValueError):
    """An explicitly tagged scalar cannot be read as its tag (go-yaml: ``cannot decode``)."""


def is_old_bool(text: str) -> bool:
    """A YAML 1.1 boolean word (``yes``, ``Off``, ...) that YAML 1.2 reads as a string."""
    return text in _OLD_BOOLS


def is_base60_float(text: str) -> bool:
    """A YAML 1.1 sexagesimal number such as ``1:30`` or ``190:20:30``."""
    if not text or not (text[0] in "+-" or "0" <= text[0] <= "9") or ":" not in text:
        return False
    return _BASE60_FLOAT.fullmatch(text) is not None


# --- Go strconv -------------------------------------------------------------------------------


def _digits_value(digits: str, base: int) -> int | None:
    if not digits:
        return None
    value = 0
    for ch in digits:
        if "0" <= ch <= "9":
            d = ord(ch) - ord("0")
        elif "a" <= ch.lower() <= "z":
            d = ord(ch.lower()) - ord("a") + 10
        else:
            return None
        if d >= base:
            return None
        value = value * base + d
    return value


def _parse_uint(text: str, base: int = 0) -> int | None:
    """``strconv.ParseUint(text, base, 64)``, with underscores already removed."""
    if not text:
        return None
    digits = text
    if base == 0:
        base = 10
        if text[0] == "0":
            prefix = text[1:2].lower()
            if len(text) >= 3 and prefix in ("b", "o", "x"):
                base = {"b": 2, "o": 8, "x": 16}[prefix]
                digits = text[2:]
            else:
                base = 8
                digits = text[1:]
                if not digits:
                    return 0
    value = _digits_value(digits, base)
    if value is None or value > _MAX_UINT64:
        return None
    return value


def _parse_int(text: str, base: int = 0) -> int | None:
    """``strconv.ParseInt(text, base, 64)``, with underscores already removed."""
    if not text:
        return None
    negative = text[0] == "-"
    unsigned = _parse_uint(text[1:] if text[0] in "+-" else text, base)
    if unsigned is None:
        return None
    if negative:
        return -unsigned if unsigned <= _MAX_INT64 + 1 else None
    return unsigned if unsigned <= _MAX_INT64 else None


def _parse_float(text: str) -> float | None:
    """``strconv.ParseFloat(text, 64)`` for the decimal forms go-yaml lets through."""
    try:
        value = float(text)
    except ValueError:
        return None
    # Go reports overflow as an error (the scalar then stays a string); underflow is fine.
    return None if math.isinf(value) else value


def _underscore_ok(text: str) -> bool:
    """Go's rule for ``_`` in numeric literals: only between digits."""
    saw = "^"
    body = text[1:] if text[:1] in ("+", "-") else text
    for ch in body:
        if "0" <= ch <= "9":
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


_PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")  # surely within int64, not octal


def _resolve_number(text: str) -> Resolved | None:
    if _PLAIN_DECIMAL.fullmatch(text):
        return Resolved(INT, int(text))
    plain = text.replace("_", "")
    value = _parse_int(plain)
    if value is None:
        value = _parse_uint(plain)
    if value is not None:
        return Resolved(INT, value)
    if _YAML_STYLE_FLOAT.fullmatch(plain):
        number = _parse_float(plain)
        if number is not None:
            return Resolved(FLOAT, number)
    # go-yaml's own 0b/0o fallbacks parse the rest with a sign allowed ("0b-1" is -1).
    for prefix, base in (("0b", 2), ("0o", 8)):
        if plain.startswith(prefix):
            value = _parse_int(plain[2:], base)
            if value is None:
                value = _parse_uint(plain[2:], base)
            if value is not None:
                return Resolved(INT, value)
        elif plain.startswith("-" + prefix):
            value = _parse_int("-" + plain[3:], base)
            if value is not None:
                return Resolved(INT, value)
    return None


# --- Go time.Parse for go-yaml's timestamp layouts ----------------------------------------------

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _getnum(text: str, pos: int) -> tuple[int, int] | None:
    """Go's ``getnum(s, false)``: one or two ASCII digits."""
    if pos >= len(text) or not "0" <= text[pos] <= "9":
        return None
    if pos + 1 < len(text) and "0" <= text[pos + 1] <= "9":
        return int(text[pos : pos + 2]), pos + 2
    return int(text[pos]), pos + 1


def _skip_space(text: str, pos: int) -> int | None:
    # A space in a Go layout matches one or more spaces.
    if pos >= len(text) or text[pos] != " ":
        return None
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


def _parse_date(text: str) -> tuple[int, int, int, int] | None:
    """``2006-1-2``: year, month, day and the position after the date."""
    year = int(text[0:4])
    if text[4:5] != "-":
        return None
    month = _getnum(text, 5)
    if month is None or text[month[1] : month[1] + 1] != "-":
        return None
    day = _getnum(text, month[1] + 1)
    if day is None:
        return None
    return year, month[0], day[0], day[1]


def _parse_time(text: str, pos: int) -> tuple[int, int, int, int, int] | None:
    """``15:4:5.999999999``: hour, minute, second, nanoseconds and the position after."""
    fields: list[int] = []
    for index in range(3):
        if index:
            if text[pos : pos + 1] != ":":
                return None
            pos += 1
        num = _getnum(text, pos)
        if num is None:
            return None
        fields.append(num[0])
        pos = num[1]
    nanos = 0
    if pos + 1 < len(text) and text[pos] in ".," and "0" <= text[pos + 1] <= "9":
        end = pos + 1
        while end < len(text) and "0" <= text[end] <= "9":
            end += 1
        digits = text[pos + 1 : end][:9]
        nanos = int(digits.ljust(9, "0"))
        pos = end
    return fields[0], fields[1], fields[2], nanos, pos


def _parse_zone(text: str, pos: int) -> tuple[int, int] | None:
    """``Z07:00``: the UTC offset in seconds and the position after."""
    if text[pos : pos + 1] == "Z":
        return 0, pos + 1
    zone = text[pos : pos + 6]
    if len(zone) < 6 or zone[3] != ":" or zone[0] not in "+-":
        return None
    digits = zone[1:3] + zone[4:6]
    if not (digits.isascii() and digits.isdigit()):
        return None
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if hours > 24 or minutes > 60:
        return None
    offset = (hours * 60 + minutes) * 60
    return (-offset if zone[0] == "-" else offset), pos + 6


def _valid(year: int, month: int, day: int, clock: tuple[int, int, int]) -> bool:
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = 29 if month == 2 and leap else _DAYS_IN_MONTH[month - 1]
    hour, minute, second = clock
    return 1 <= day <= days and hour < 24 and minute < 60 and second < 60


def _format_rfc3339nano(
    date: tuple[int, int, int], clock: tuple[int, int, int, int], offset: int
) -> str:
    year, month, day = date
    hour, minute, second, nanos = clock
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    if offset == 0:
        return text + "Z"
    sign = "-" if offset < 0 else "+"
    zone = abs(offset) // 60
    return f"{text}{sign}{zone // 60:02d}:{zone % 60:02d}"


def parse_timestamp(text: str) -> str | None:
    """go-yaml's ``parseTimestamp``: the RFC 3339 rendering, or ``None`` if not a timestamp.

    Layouts tried: ``2006-1-2T15:4:5.999999999Z07:00`` (also with ``t``),
    ``2006-1-2 15:4:5.999999999`` (UTC) and ``2006-1-2``.
    """
    if len(text) < 5 or not text[:4].isascii() or not text[:4].isdigit() or text[4] != "-":
        return None
    date = _parse_date(text)
    if date is None:
        return None
    year, month, day, pos = date
    if pos == len(text):
        if not _valid(year, month, day, (0, 0, 0)):
            return None
        return _format_rfc3339nano((year, month, day), (0, 0, 0, 0), 0)
    separator = text[pos]
    if separator in "Tt":
        pos += 1
    else:
        skipped = _skip_space(text, pos)
        if skipped is None:
            return None
        pos = skipped
    clock = _parse_time(text, pos)
    if clock is None:
        return None
    hour, minute, second, nanos, pos = clock
    offset = 0
    if separator in "Tt":
        zone = _parse_zone(text, pos)
        if zone is None:
            return None
        offset, pos = zone
    if pos != len(text) or not _valid(year, month, day, (hour, minute, second)):
        return None
    return _format_rfc3339nano((year, month, day), (hour, minute, second, nanos), offset)


# --- resolve ------------------------------------------------------------------------------------


def _resolve_untagged(tag: str, text: str) -> Resolved:
    hint = _hint(text)
    if not hint or tag in (STR, BINARY):
        return Resolved(STR, text)
    known = _RESOLVE_MAP.get(text)
    if known is not None:
        return Resolved(*known)
    if hint == _HINT_DOT:
        if _underscore_ok(text):
            plain = text.replace("_", "")
            if _DOT_FLOAT.fullmatch(plain):
                number = _parse_float(plain)
                if number is not None:
                    return Resolved(FLOAT, number)
    elif hint in (_HINT_DIGIT, _HINT_SIGN):
        if tag in ("", TIMESTAMP):
            stamp = parse_timestamp(text)
            if stamp is not None:
                return Resolved(TIMESTAMP, stamp)
        resolved = _resolve_number(text)
        if resolved is not None:
            return resolved
    return Resolved(STR, text)


@functools.lru_cache(maxsize=4096)
def resolve(tag: str, text: str) -> Resolved:
    """go-yaml's ``resolve(tag, text)`` for a scalar that is not an indicated string.

    ``tag`` is the explicit short tag or ``""``. Unknown tags leave the text as it is.
    Timestamps resolve to their RFC 3339 text. Raises :class:`ResolveError` when an explicit
    ``!!int``/``!!float``/``!!bool``/``!!null``/``!!timestamp`` tag does not fit the text.
    """
    if tag not in _RESOLVABLE:
        return Resolved(tag, text)
    resolved = _resolve_untagged(tag, text)
    if tag in ("", resolved.tag, STR):
        return resolved
    if tag == FLOAT and resolved.tag == INT:
        assert isinstance(resolved.value, int)
        return Resolved(FLOAT, float(resolved.value))
    raise ResolveError(f"cannot decode {resolved.tag} `{text}` as a {tag}")
