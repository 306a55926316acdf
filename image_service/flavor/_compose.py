"""YAML syntax to a node tree: the only place PyYAML is used (``schematic.md`` §8).

PyYAML (libyaml when available, which is also what go-yaml is ported from) parses the bytes
into events; this module builds go-yaml-like nodes from them, keeping what go-yaml's decoder
looks at: kind, explicit tag, raw scalar text, scalar style, line, anchors and aliases. Tags are
*not* resolved here (PyYAML would apply YAML 1.1 rules); :mod:`image_service.flavor.decode`
does that.

Only the first document is read; the parser is not asked for anything after it. Nesting deeper
than :data:`MAX_DEPTH` is refused while parsing, so a hostile ``[[[[...`` costs nothing. Every
PyYAML error becomes :class:`~image_service.flavor.errors.InvalidFlavor` with go-yaml's message
layout (``yaml: line N: <problem>``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from image_service.flavor.errors import InvalidFlavor

__all__ = ["MAX_DEPTH", "Node", "NodeKind", "compose_first_document"]

MAX_DEPTH = 100
"""Deepest nesting of collections accepted (go-yaml allows 10 000; flavors need about 8)."""

_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
_TAG_PREFIX = "tag:yaml.org,2002:"


class NodeKind(enum.Enum):
    """The four node kinds of a YAML representation graph (aliases kept as nodes, as in go-yaml)."""

    SCALAR = "scalar"
    SEQUENCE = "sequence"
    MAPPING = "mapping"
    ALIAS = "alias"


@dataclass(slots=True, eq=False)
class Node:
    """One node. Mapping children alternate key, value; an alias points at its anchored node."""

    kind: NodeKind
    line: int
    tag: str = ""
    """Explicit tag in short form (``!!int``, ``!foo``); empty when absent or ``!``."""
    value: str = ""
    """Scalar text as parsed (escapes processed, no type conversion); anchor name of an alias."""
    style: str = ""
    """Scalar style: ``""`` plain, ``'``, ``"``, ``|`` or ``>``."""
    children: Sequence[Node] = ()
    """Child nodes of a collection (a list while composing); empty for scalars and aliases."""
    target: Node | None = None


def _short_tag(tag: str | None) -> str:
    if not tag or tag == "!":
        return ""
    if tag.startswith(_TAG_PREFIX):
        return "!!" + tag[len(_TAG_PREFIX) :]
    return tag


def _syntax_message(exc: yaml.YAMLError) -> str:
    """go-yaml's ``yaml: line N: problem`` wording, including its choice of line."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"yaml: {exc.reason}"
    if isinstance(exc, yaml.MarkedYAMLError):
        # go-yaml prefers the context mark, and only counts lines from 1 for scanner errors.
        line = 0
        for mark in (exc.context_mark, exc.problem_mark):
            if mark is not None and mark.line != 0:
                line = mark.line + (1 if isinstance(exc, yaml.scanner.ScannerError) else 0)
                break
        where = f"line {line}: " if line else ""
        return f"yaml: {where}{exc.problem or 'unknown problem parsing YAML content'}"
    return f"yaml: {exc}"


class _Composer:
    def __init__(self, loader: yaml.CSafeLoader | yaml.SafeLoader) -> None:
        self._loader = loader
        self._anchors: dict[str, Node] = {}

    def _next(self) -> yaml.Event:
        event = self._loader.get_event()
        assert event is not None  # the parser emits STREAM-END before running dry
        return event

    def document(self) -> Node | None:
        self._next()  # STREAM-START
        if isinstance(self._next(), StreamEndEvent):
            return None
        root: Node | None = None
        stack: list[list[Node]] = []  # children lists of the open collections
        anchors = self._anchors
        next_event = self._next
        # This loop runs once per event of documents up to the body limit, hence the plain
        # type() dispatch and local names.
        while True:
            event = next_event()
            mark = event.start_mark
            line = mark.line + 1 if mark is not None else 0
            anchor: str | None = None
            if type(event) is ScalarEvent:
                node = Node(
                    NodeKind.SCALAR, line, _short_tag(event.tag), event.value, event.style or ""
                )
                anchor = event.anchor
            elif type(event) is MappingStartEvent:
                node = Node(NodeKind.MAPPING, line, _short_tag(event.tag), children=[])
                anchor = event.anchor
            elif type(event) is SequenceStartEvent:
                node = Node(NodeKind.SEQUENCE, line, _short_tag(event.tag), children=[])
                anchor = event.anchor
            elif type(event) is AliasEvent:
                name = event.anchor or ""
                target = anchors.get(name)
                if target is None:
                    raise InvalidFlavor(f"yaml: line {line}: unknown anchor '{name}' referenced")
                node = Node(NodeKind.ALIAS, line, value=name, target=target)
            elif type(event) is DocumentEndEvent:
                return root
            else:  # end of a collection
                stack.pop()
                continue
            if anchor:
                # Registered before the children: an alias inside points back at its own parent,
                # which the decoder reports like go-yaml ("value contains itself").
                anchors[anchor] = node
            if stack:
                stack[-1].append(node)
            else:
                root = node
            if isinstance(node.children, list):
                stack.append(node.children)
                if len(stack) > MAX_DEPTH:
                    raise InvalidFlavor(
                        f"yaml: line {line}: document nests deeper than {MAX_DEPTH} levels"
                    )


def compose_first_document(data: bytes) -> Node | None:
    """The root node of the first document, or ``None`` when the stream has no document."""
    loader = _LOADER(data)
    try:
        return _Composer(loader).document()
    except InvalidFlavor:
        raise
    except yaml.YAMLError as exc:
        raise InvalidFlavor(_syntax_message(exc)) from exc
    except Exception as exc:  # PyYAML must never leak a raw exception to a client
        raise InvalidFlavor(f"yaml: cannot parse the document: {exc}") from exc
    finally:
        loader.dispose()
