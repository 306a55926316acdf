"""A block-style YAML emitter that lays out text byte for byte like go-yaml (``schematic.md`` §4.3).

It supports exactly what canonical flavors and extension manifests need: mappings (ordered
``(key, value)`` pairs, a ``Mapping`` in its iteration order, or an
:class:`~image_service.flavor.model.OptionMap` in go-yaml key order), sequences
(``list``/``tuple``), and scalars (``str``, ``int``, ``float``, ``bool``, ``None``,
:class:`~image_service.flavor.model.Timestamp`). Output is block style with 4-space indentation and
non-compact sequences; empty collections are ``{}``/``[]``.

Layout follows libyaml's emitter state (current column, "at indentation", "after whitespace"),
kept in :class:`_Writer`, because the placement rules are easiest to get exactly right that way:
children of a mapping key start at the next multiple of 4 after the key's column, children of a
sequence item two columns after its dash. Scalar styles come from
:mod:`image_service.flavor._scalars`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

from image_service.flavor._scalars import (
    BREAKS,
    Style,
    format_float,
    render_double,
    render_literal,
    render_single,
    string_style,
)
from image_service.flavor.model import OptionMap, Timestamp

__all__ = ["EmitKey", "EmitValue", "OutputTooLarge", "emit_mapping"]

EmitKey: TypeAlias = str | int | float | bool | Timestamp | None
EmitValue: TypeAlias = (
    str
    | int
    | float
    | bool
    | Timestamp
    | list["EmitValue"]
    | tuple["EmitValue", ...]
    | Mapping[EmitKey, "EmitValue"]
    | OptionMap
    | None
)

_BEST_INDENT = 4
_MAX_SIMPLE_KEY_BYTES = 128


class OutputTooLarge(ValueError):
    """The document would exceed the caller's size limit (deep nesting multiplies indentation)."""


def _child_indent(indent: int) -> int:
    """libyaml's indent for the content of a mapping key at column ``indent``."""
    return _BEST_INDENT * ((indent + _BEST_INDENT) // _BEST_INDENT)


def _plain_text(value: int | float | bool | Timestamp | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    return value.text


def _entries(value: Mapping[EmitKey, EmitValue] | OptionMap) -> list[tuple[EmitKey, EmitValue]]:
    if isinstance(value, OptionMap):
        return list(value.entries)
    return list(value.items())


class _Writer:
    """The output buffer plus the three bits of libyaml emitter state layout depends on."""

    def __init__(self, max_chars: int | None) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._max_chars = max_chars
        self._column = 0
        self._indention = True  # only indentation written on the current line so far
        self._whitespace = True  # the last character written was whitespace

    def text(self) -> str:
        return "".join(self._parts)

    def _append(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._max_chars is not None and self._size > self._max_chars:
            raise OutputTooLarge(f"the document is longer than {self._max_chars} characters")

    def _put(self, text: str) -> None:
        self._append(text)
        self._column += len(text)

    def _put_break(self) -> None:
        self._append("\n")
        self._column = 0
        self._indention = True

    def write_indent(self, indent: int) -> None:
        if (
            not self._indention
            or self._column > indent
            or (self._column == indent and not self._whitespace)
        ):
            self._put_break()
        if self._column < indent:
            self._put(" " * (indent - self._column))
        self._whitespace = True

    def indicator(
        self, text: str, *, need_whitespace: bool, is_whitespace: bool, is_indention: bool
    ) -> None:
        if need_whitespace and not self._whitespace:
            self._put(" ")
        self._put(text)
        self._whitespace = is_whitespace
        self._indention = self._indention and is_indention

    def scalar(self, value: EmitKey, indent: int, *, is_key: bool) -> None:
        if not isinstance(value, str):
            self._inline(_plain_text(value))
            return
        style = string_style(value, is_key=is_key)
        if style is Style.PLAIN:
            self._inline(value)
        elif style is Style.SINGLE:
            self._inline(render_single(value, indent))
        elif style is Style.DOUBLE:
            self._inline(render_double(value))
        else:
            self._literal(value, indent)

    def _inline(self, text: str) -> None:
        if text and not self._whitespace:
            self._put(" ")
        self._put(text)
        self._whitespace = False
        self._indention = False

    def _literal(self, value: str, indent: int) -> None:
        text, at_line_start = render_literal(value, indent)
        self.indicator(
            text[: text.index("\n")], need_whitespace=True, is_whitespace=False, is_indention=False
        )
        self._put_break()
        self._append(text[text.index("\n") + 1 :])
        self._whitespace = True
        if at_line_start:
            self._column, self._indention = 0, True
        else:
            self._column, self._indention = indent + 1, False

    def mapping(self, entries: list[tuple[EmitKey, EmitValue]], indent: int) -> None:
        for key, value in entries:
            self.write_indent(indent)
            _check_key(key)
            self.scalar(key, _child_indent(indent), is_key=True)
            self.indicator(":", need_whitespace=False, is_whitespace=False, is_indention=False)
            self.value(value, _child_indent(indent))

    def sequence(self, items: list[EmitValue], indent: int) -> None:
        for item in items:
            self.write_indent(indent)
            self.indicator("-", need_whitespace=True, is_whitespace=False, is_indention=True)
            if type(item) is str:  # the common case, without value()'s type dispatch
                self.scalar(item, indent + 2, is_key=False)
            else:
                self.value(item, indent + 2)

    def value(self, value: EmitValue, indent: int) -> None:
        """Write ``value`` whose own content (children, literal lines) goes at ``indent``."""
        if isinstance(value, OptionMap | Mapping):
            entries = _entries(value)
            if entries:
                self.mapping(entries, indent)
            else:
                self._flow_empty("{", "}")
        elif isinstance(value, list | tuple):
            if value:
                self.sequence(list(value), indent)
            else:
                self._flow_empty("[", "]")
        else:
            self.scalar(value, indent, is_key=False)

    def _flow_empty(self, start: str, end: str) -> None:
        self.indicator(start, need_whitespace=True, is_whitespace=True, is_indention=False)
        self.indicator(end, need_whitespace=False, is_whitespace=False, is_indention=False)


def _check_key(key: EmitKey) -> None:
    # Longer or multi-line keys would need YAML's explicit "? key" form, whose exact upstream
    # layout is unverified; the decoder rejects such keys, so this only guards direct callers.
    if isinstance(key, str) and (
        len(key.encode("utf-8")) > _MAX_SIMPLE_KEY_BYTES or any(ch in BREAKS for ch in key)
    ):
        raise ValueError(f"mapping key {key[:40]!r}... is too long or spans lines")


def emit_mapping(
    items: Iterable[tuple[EmitKey, EmitValue]], *, max_chars: int | None = None
) -> str:
    """A YAML document holding one block mapping of ``items``, in the given order.

    The text has no ``---``/``...`` markers and ends with exactly one line feed (or with the
    last literal block's own line breaks). Nested mappings, sequences and multi-line strings
    (written as literal blocks when they can be) are laid out like go-yaml's encoder with
    ``SetIndent(4)``. Raises :class:`OutputTooLarge` as soon as the text would exceed
    ``max_chars``.
    """
    entries = list(items)
    if not entries:
        return "{}\n"
    writer = _Writer(max_chars)
    writer.mapping(entries, 0)
    writer.write_indent(0)  # document end: finish the last line
    return writer.text()
