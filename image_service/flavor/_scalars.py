"""How go-yaml writes one scalar: style choice and text of each style (``schematic.md`` §4.4-4.7).

A string's style is decided in two stages, as upstream does:

1. the encoder's preference (``stringv``): a literal block if the string has a line feed, double
   quotes if it would read back as something other than a string, the version policy of
   :mod:`image_service.flavor._policy` for YAML 1.1 words, otherwise plain;
2. the emitter's veto (libyaml's ``analyze_scalar`` / ``select_scalar_style``): plain falls back to
   single quotes, single quotes and literal blocks fall back to double quotes, when the text
   cannot be represented in them.

The renderers return text only; :mod:`image_service.flavor._emitter` places it on the page. Line
width is unlimited, so no style ever folds. Numbers, booleans and null are always plain.
"""

from __future__ import annotations

import decimal
import math
import re
from dataclasses import dataclass
from enum import Enum

from image_service.flavor import _policy
from image_service.flavor._resolve import STR, resolve

__all__ = [
    "BREAKS",
    "Style",
    "format_float",
    "render_double",
    "render_literal",
    "render_single",
    "string_style",
]


class Style(Enum):
    """The four scalar styles the canonical form uses."""

    PLAIN = "plain"
    SINGLE = "single"
    DOUBLE = "double"
    LITERAL = "literal"


BREAKS = frozenset("\r\n\x85\u2028\u2029")
_FIRST_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")
_BLANKS = frozenset(" \t")
_SIMPLE_ESCAPES = {
    "\x00": "0",
    "\x07": "a",
    "\x08": "b",
    "\t": "t",
    "\n": "n",
    "\x0b": "v",
    "\x0c": "f",
    "\r": "r",
    "\x1b": "e",
    '"': '"',
    "\\": "\\",
    "\x85": "N",
    "\xa0": "_",
    "\u2028": "L",
    "\u2029": "P",
}


def _printable(ch: str) -> bool:
    """libyaml's printable set; note it excludes everything outside the BMP (emoji)."""
    code = ord(ch)
    return (
        code == 0x0A
        or 0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
    )


@dataclass(frozen=True, slots=True)
class _Analysis:
    """What libyaml's ``analyze_scalar`` concludes, for block context."""

    multiline: bool
    plain_allowed: bool
    single_allowed: bool
    block_allowed: bool


def _analyze(value: str) -> _Analysis:
    if not value:
        return _Analysis(
            multiline=False, plain_allowed=True, single_allowed=True, block_allowed=False
        )
    indicators = value.startswith(("---", "..."))
    line_breaks = special = tabs = False
    leading = trailing_space = trailing_break = break_space = space_break = False
    previous_space = previous_break = False
    preceded_by_blank = True
    last = len(value) - 1
    for i, ch in enumerate(value):
        followed_by_blank = i == last or value[i + 1] in _BLANKS
        if i == 0:
            if ch in _FIRST_INDICATORS or (ch in "?:-" and followed_by_blank):
                indicators = True
        elif (ch == ":" and followed_by_blank) or (ch == "#" and preceded_by_blank):
            indicators = True
        if ch == "\t":
            tabs = True
        elif not _printable(ch):
            special = True
        if ch == " ":
            leading = leading or i == 0
            trailing_space = i == last
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif ch in BREAKS:
            line_breaks = True
            leading = leading or i == 0
            trailing_break = i == last
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_blank = ch in _BLANKS or ch in BREAKS or ch == "\x00"
    plain = not (leading or trailing_space or trailing_break or line_breaks or indicators)
    plain = plain and not (break_space or space_break or tabs or special)
    single = not (break_space or space_break or tabs or special)
    block = not (trailing_space or space_break or special)
    return _Analysis(line_breaks, plain, single, block)


def _preferred_style(value: str) -> Style:
    """The encoder's choice before the emitter checks it (go-yaml ``stringv``)."""
    if "\n" in value:
        return Style.LITERAL if _policy.literal_block_allowed(value) else Style.DOUBLE
    if resolve("", value).tag != STR:
        return Style.DOUBLE
    forced = _policy.yaml11_string_style(value)
    if forced == "single":
        return Style.SINGLE
    if forced == "double":
        return Style.DOUBLE
    return Style.PLAIN


# Printable ASCII without blanks or ':', not starting with an indicator or '.': such a string can
# always be written plain as far as the emitter is concerned (only resolution can object).
_SIMPLE = re.compile(r"[A-Za-z0-9_/=+;$()~^<][!-9;-~]*")


def string_style(value: str, *, is_key: bool = False) -> Style:
    """The style go-yaml writes a string in, as a mapping value/item or as a mapping key."""
    if _SIMPLE.fullmatch(value):
        return _preferred_style(value)  # never LITERAL: there is no line feed
    analysis = _analyze(value)
    style = _preferred_style(value)
    if is_key and analysis.multiline:
        style = Style.DOUBLE
    if style is Style.PLAIN and not analysis.plain_allowed:
        style = Style.SINGLE
    if style is Style.SINGLE and not analysis.single_allowed:
        style = Style.DOUBLE
    if style is Style.LITERAL and (not analysis.block_allowed or is_key):
        style = Style.DOUBLE
    return style


def render_double(value: str) -> str:
    """A double-quoted scalar with libyaml's escapes (uppercase hex)."""
    out = ['"']
    for ch in value:
        # Only these are escaped; U+00A0 has a short escape too but is printable, so stays raw.
        if ch in '"\\' or ch in BREAKS or not _printable(ch):
            code = ord(ch)
            if ch in _SIMPLE_ESCAPES:
                out.append("\\" + _SIMPLE_ESCAPES[ch])
            elif code <= 0xFF:
                out.append(f"\\x{code:02X}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04X}")
            else:
                out.append(f"\\U{code:08X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _with_continuations(value: str, indent: int) -> tuple[list[str], bool]:
    """Text with each line after a line break indented; whether it ends right after a break.

    A ``\\n`` is written as itself; LS/PS are written raw too and, like libyaml, the next line
    is indented without an extra line feed.
    """
    out: list[str] = []
    at_break = True
    start = 0
    for i, ch in enumerate(value):
        if ch in BREAKS:
            if start < i:
                if at_break:
                    out.append(" " * indent)
                out.append(value[start:i])
            out.append(ch)
            at_break = True
            start = i + 1
    if start < len(value):
        if at_break:
            out.append(" " * indent)
        out.append(value[start:])
        at_break = False
    return out, at_break


def render_single(value: str, indent: int) -> str:
    """A single-quoted scalar; ``'`` doubled. Only LS/PS can break it, continuing at ``indent``."""
    body = value.replace("'", "''")
    if not any(ch in BREAKS for ch in body):
        return "'" + body + "'"
    # The first line is not indented (it follows the opening quote).
    first_break = next(i for i, ch in enumerate(body) if ch in BREAKS)
    rest, _ = _with_continuations(body[first_break:], indent)
    return "'" + body[:first_break] + "".join(rest) + "'"


def render_literal(value: str, indent: int) -> tuple[str, bool]:
    """A literal block: header (``|``, indentation and chomping indicators), line feed, content.

    Returns the text and whether it ends at the start of a line (the string's own final break).
    """
    header = "|"
    if value[0] == " " or value[0] in BREAKS:
        header += "4"  # go-yaml always writes its best indent here, whatever the real offset
    if value[-1] not in BREAKS:
        header += "-"
    elif len(value) == 1 or value[-2] in BREAKS:
        header += "+"
    body, at_break = _with_continuations(value, indent)
    return header + "\n" + "".join(body), at_break


def format_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` as go-yaml writes floats."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    # repr() gives the shortest digits that round-trip, as Go's shortest formatting does.
    parts = decimal.Decimal(repr(abs(value))).as_tuple()
    assert isinstance(parts.exponent, int)
    digits = "".join(str(d) for d in parts.digits)
    point = len(digits) + parts.exponent  # Go's digs.dp: where the decimal point goes
    digits = digits.rstrip("0")
    exponent = point - 1
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"
