"""The strict flavor decoder: bytes (YAML or JSON) to :class:`~image_service.flavor.model.Flavor`.

Two steps, as ``schematic.md`` §8 prescribes. :mod:`image_service.flavor._compose` parses the syntax
of the first document into nodes. This module then does what go-yaml's decoder does when
upstream unmarshals into its ``Schematic`` struct with ``KnownFields(true)``:

* string fields take a scalar's raw text whatever it looks like (``0x1f`` stays ``0x1f``);
* ``meta[].key`` and ``sectorSize`` take integers in any YAML 1.2 notation, booleans take
  ``true``/``false`` and the YAML 1.1 words, ``bootloader`` takes the enum names;
* ``overlay.options`` values are typed by go-yaml's resolution rules (:mod:`._resolve`);
* unknown fields, duplicate keys and type mismatches are collected and reported together, in
  go-yaml's words: ``yaml: construct errors: line N: ...; line M: ...``;
* null leaves a field at its zero value and drops an item from a typed list.

Deliberate departures, all towards refusing input: merge keys (``<<``) and ``!!binary`` are
rejected; floats are not accepted for integer fields; aliases may expand a document only
within go-yaml's alias ratio and :data:`MAX_ALIAS_EXPANSION` characters; nesting is capped at
:data:`~image_service.flavor._compose.MAX_DEPTH`; option keys must be single-line and at most 128
bytes (upstream would write them in an unverified explicit-key form).

Version-dependent choices (timestamps) come from :mod:`image_service.flavor._policy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from image_service.flavor import _policy
from image_service.flavor._compose import MAX_DEPTH, Node, NodeKind, compose_first_document
from image_service.flavor._resolve import (
    BINARY,
    BOOL,
    FLOAT,
    INT,
    MAP,
    MERGE,
    NULL,
    SEQ,
    STR,
    TIMESTAMP,
    Resolved,
    ResolveError,
    resolve,
)
from image_service.flavor.errors import InvalidFlavor
from image_service.flavor.model import (
    Bootloader,
    Customization,
    DiskImage,
    Flavor,
    MetaValue,
    OptionKey,
    OptionMap,
    OptionValue,
    Overlay,
    SecureBoot,
    Timestamp,
    option_identity,
)

__all__ = ["MAX_ALIAS_EXPANSION", "decode_flavor"]

MAX_ALIAS_EXPANSION = 1 << 20
"""Characters of scalar text that aliases may add to a document (a second guard against
billion-laughs documents next to go-yaml's node ratio)."""

_OWNER_ERROR = "owner field is only supported in Enterprise edition"
_MAX_KEY_BYTES = 128
_KEY_BREAKS = frozenset("\r\n\x85\u2028\u2029")
_ALIAS_RATIO_LOW = 400_000
_ALIAS_RATIO_HIGH = 4_000_000
_MAX_ERRORS = 100

T = TypeVar("T")


class _Nothing:
    """go-yaml's ``good == false``: the target keeps its zero value (an error may be recorded)."""


_NOTHING: Final = _Nothing()


class _Fatal(Exception):
    """go-yaml's ``failf``: decoding stops at once with this message."""


def _allowed_alias_ratio(count: int) -> float:
    if count <= _ALIAS_RATIO_LOW:
        return 0.99
    if count >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (count - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW)


def _node_tag(node: Node) -> str:
    """The tag go-yaml's parser gives a node: explicit, else implied by kind, style or text."""
    if node.tag:
        return node.tag
    if node.kind is NodeKind.SEQUENCE:
        return SEQ
    if node.kind is NodeKind.MAPPING:
        return MAP
    if node.kind is NodeKind.ALIAS:
        return _node_tag(node.target) if node.target is not None else ""
    if node.style:
        return STR
    if node.value == "<<":
        return MERGE
    return resolve("", node.value).tag


def _is_merge(node: Node) -> bool:
    return node.kind is NodeKind.SCALAR and _node_tag(node) == MERGE


def _indicated_string(node: Node) -> bool:
    return node.tag == STR or (not node.tag and node.style != "")


def _go_quote(text: str) -> str:
    """Go's ``%#v`` of a string (``strconv.Quote``)."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _check_option_key(key: OptionKey, node: Node) -> None:
    if isinstance(key, str) and (
        len(key.encode("utf-8")) > _MAX_KEY_BYTES or any(ch in _KEY_BREAKS for ch in key)
    ):
        raise _Fatal(
            f"line {node.line}: overlay option keys must be single-line and at most "
            f"{_MAX_KEY_BYTES} bytes"
        )


@dataclass(frozen=True)
class _Struct:
    """A Go struct: its type name (for messages), its fields and how to build the result."""

    go_name: str
    fields: dict[str, Callable[[_Decoder, Node], object]]
    make: Callable[[dict[str, Any]], object]


class _Decoder:
    """go-yaml's constructor over :class:`Node` trees, for the flavor schema."""

    def __init__(self) -> None:
        self.errors: list[str] = []  # the first _MAX_ERRORS construct errors
        self.error_count = 0
        self._constructs = 0
        self._aliased = 0
        self._alias_depth = 0
        self._alias_chars = 0
        self._depth = 0
        self._active_aliases: set[int] = set()

    # -- generic machinery --------------------------------------------------------------------

    def error(self, line: int, message: str) -> None:
        """Record a construct error; decoding goes on to find the others, as in go-yaml."""
        self.error_count += 1
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(f"line {line}: {message}")

    def terror(self, node: Node, target: str) -> None:
        """go-yaml's type error: the node's tag and (shortened) text, and the Go target type."""
        tag = _node_tag(node)
        text = ""
        if tag not in (SEQ, MAP):
            raw = node.value.encode("utf-8")
            shown = raw[:7].decode("utf-8", "replace") + "..." if len(raw) > 10 else node.value
            text = f" `{shown}`"
        self.error(node.line, f"cannot unmarshal {tag}{text} into {target}")

    def construct(self, node: Node, build: Callable[[_Decoder, Node], T]) -> T | _Nothing:
        self._constructs += 1
        if self._alias_depth:
            self._expanded(node)
        if node.kind is NodeKind.ALIAS:
            return self._alias(node, build)
        if node.kind is NodeKind.SCALAR:  # leaves cannot nest deeper: skip the depth count
            return build(self, node)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Fatal(f"line {node.line}: document nests deeper than {MAX_DEPTH} levels")
            if node.kind is NodeKind.MAPPING and not self._unique_keys(node):
                return _NOTHING
            return build(self, node)
        finally:
            self._depth -= 1

    def _expanded(self, node: Node) -> None:
        """Account for a node reached through an alias; refuse billion-laughs documents."""
        self._aliased += 1
        # go-yaml's rule: past 1000 nodes, at most 99% (shrinking to 10% for huge documents)
        # of what is decoded may come from alias expansion.
        if (
            self._aliased > 100
            and self._constructs > 1000
            and self._aliased / self._constructs > _allowed_alias_ratio(self._constructs)
        ):
            raise _Fatal("document contains excessive aliasing")
        if node.kind is NodeKind.SCALAR:
            self._alias_chars += len(node.value)
            if self._alias_chars > MAX_ALIAS_EXPANSION:
                raise _Fatal("document contains excessive aliasing")

    def _alias(self, node: Node, build: Callable[[_Decoder, Node], T]) -> T | _Nothing:
        if id(node) in self._active_aliases:
            raise _Fatal(f"anchor '{node.value}' value contains itself")
        assert node.target is not None
        self._active_aliases.add(id(node))
        self._alias_depth += 1
        try:
            return self.construct(node.target, build)
        finally:
            self._alias_depth -= 1
            self._active_aliases.discard(id(node))

    def _unique_keys(self, node: Node) -> bool:
        """go-yaml's duplicate check: same kind and same raw text, every pair reported."""
        keys = node.children[::2]
        groups: dict[tuple[NodeKind, str], list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault((key.kind, key.value), []).append(index)
        if len(groups) == len(keys):
            return True
        seen: dict[tuple[NodeKind, str], int] = {}
        for key in keys:
            ident = (key.kind, key.value)
            group = groups[ident]
            position = seen[ident] = seen.get(ident, -1) + 1
            if len(group) - position > 1 and len(self.errors) < _MAX_ERRORS:
                for later in group[position + 1 : position + 1 + _MAX_ERRORS]:
                    message = (
                        f"mapping key {_go_quote(key.value)} already defined at line {key.line}"
                    )
                    self.error(keys[later].line, message)
            else:
                self.error_count += len(group) - position - 1
        return False

    def scalar(self, node: Node) -> Resolved:
        """The resolved tag and value of a scalar node (explicit tags honoured)."""
        if _indicated_string(node):
            return Resolved(STR, node.value)
        if node.tag == BINARY:
            raise _Fatal(f"line {node.line}: !!binary values are not supported")
        try:
            return resolve(node.tag, node.value)
        except ResolveError as exc:
            raise _Fatal(str(exc)) from exc

    # -- Go types ---------------------------------------------------------------------------

    def string(self, node: Node) -> str | _Nothing:
        if node.kind is not NodeKind.SCALAR:
            self.terror(node, "string")
            return _NOTHING
        resolved = self.scalar(node)
        if resolved.tag == NULL:
            return _NOTHING
        if resolved.tag == TIMESTAMP and _policy.timestamp_into_string_is_error():
            self.terror(node, "string")
            return _NOTHING
        return node.value  # the raw text, whatever it resolved to

    def unsigned(self, node: Node, bits: int, go_name: str) -> int | _Nothing:
        if node.kind is not NodeKind.SCALAR:
            self.terror(node, go_name)
            return _NOTHING
        resolved = self.scalar(node)
        if resolved.tag == NULL:
            return _NOTHING
        value = resolved.value
        # Integers only: go-yaml would also take an integral float, the spec says reject.
        if resolved.tag == INT and isinstance(value, int) and 0 <= value < (1 << bits):
            return value
        self.terror(node, go_name)
        return _NOTHING

    def boolean(self, node: Node) -> bool | _Nothing:
        if node.kind is not NodeKind.SCALAR:
            self.terror(node, "bool")
            return _NOTHING
        resolved = self.scalar(node)
        if resolved.tag == NULL:
            return _NOTHING
        if resolved.tag == BOOL and isinstance(resolved.value, bool):
            return resolved.value
        if isinstance(resolved.value, str) and resolved.tag != TIMESTAMP:
            # go-yaml's YAML 1.1 compatibility, for typed bool targets only.
            if resolved.value in ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"):
                return True
            if resolved.value in ("n", "N", "no", "No", "NO", "off", "Off", "OFF"):
                return False
        self.terror(node, "bool")
        return _NOTHING

    def bootloader(self, node: Node) -> Bootloader | _Nothing:
        if node.kind is not NodeKind.SCALAR:
            self.terror(node, "schematic.BootloaderKind")
            return _NOTHING
        if self.scalar(node).tag == NULL:
            return _NOTHING
        text = node.value
        for candidate in (text, text.lower()):
            try:
                return Bootloader(candidate)
            except ValueError:
                continue
        self.error(node.line, f"{text} does not belong to BootloaderKind values")
        return _NOTHING

    def sequence(
        self, node: Node, item: Callable[[_Decoder, Node], T], go_name: str
    ) -> tuple[T, ...] | _Nothing:
        if node.kind is NodeKind.SEQUENCE:
            values = (self.construct(child, item) for child in node.children)
            return tuple(value for value in values if not isinstance(value, _Nothing))
        if node.kind is NodeKind.SCALAR and self.scalar(node).tag == NULL:
            return ()
        self.terror(node, go_name)
        return _NOTHING

    def struct(self, node: Node, spec: _Struct) -> object:
        if node.kind is not NodeKind.MAPPING:
            if node.kind is NodeKind.SCALAR and self.scalar(node).tag == NULL:
                return _NOTHING
            self.terror(node, spec.go_name)
            return _NOTHING
        values: dict[str, Any] = {}
        done: set[str] = set()
        for key, value in zip(node.children[::2], node.children[1::2], strict=True):
            if _is_merge(key):
                raise _Fatal(f"line {key.line}: merge keys (<<) are not supported")
            name = self.construct(key, _Decoder.string)
            if isinstance(name, _Nothing):
                continue
            build = spec.fields.get(name)
            if build is None:
                self.error(key.line, f"field {name} not found in type {spec.go_name}")
                continue
            if name in done:
                self.error(key.line, f"field {name} already set in type {spec.go_name}")
                continue
            done.add(name)
            result = self.construct(value, build)
            if not isinstance(result, _Nothing):
                values[name] = result
        return spec.make(values)

    # -- overlay.options ----------------------------------------------------------------------

    def options(self, node: Node) -> OptionMap | _Nothing:
        """``map[string]any``: keys are read as strings whatever they look like."""
        if node.kind is not NodeKind.MAPPING:
            if node.kind is NodeKind.SCALAR and self.scalar(node).tag == NULL:
                return OptionMap()
            self.terror(node, "map[string]interface {}")
            return _NOTHING
        return self._option_map(node, string_keys=True)

    def _option_map(self, node: Node, *, string_keys: bool) -> OptionMap:
        entries: dict[tuple[object, ...], tuple[OptionKey, OptionValue]] = {}
        for key_node, value_node in zip(node.children[::2], node.children[1::2], strict=True):
            if _is_merge(key_node):
                raise _Fatal(f"line {key_node.line}: merge keys (<<) are not supported")
            key: OptionKey | _Nothing
            if string_keys:
                key = self.construct(key_node, _Decoder.string)
            else:
                key = self.construct(key_node, _Decoder.any_key)
            if isinstance(key, _Nothing):
                continue
            _check_option_key(key, key_node)
            value = self.construct(value_node, _Decoder.any)
            if isinstance(value, _Nothing):
                continue
            # Later entries replace earlier ones with the same (typed) key, as in a Go map.
            entries[option_identity(key)] = (key, value)
        return OptionMap(tuple(entries.values()))

    def any_key(self, node: Node) -> OptionKey | _Nothing:
        if node.kind is not NodeKind.SCALAR:
            raise _Fatal(f"line {node.line}: a {node.kind.value} cannot be a map key")
        value = self.any(node)
        assert not isinstance(value, tuple | OptionMap)
        return value

    def any(self, node: Node) -> OptionValue | _Nothing:
        """``interface{}``: go-yaml's natural Go value for the node."""
        if node.kind is NodeKind.SEQUENCE:
            values = (self.construct(child, _Decoder.any) for child in node.children)
            return tuple(value for value in values if not isinstance(value, _Nothing))
        if node.kind is NodeKind.MAPPING:
            # go-yaml makes map[string]any when every key is tagged !!str, else map[any]any.
            string_keys = all(_node_tag(key) in (STR, MERGE) for key in node.children[::2])
            return self._option_map(node, string_keys=string_keys)
        resolved = self.scalar(node)
        if resolved.tag == NULL:
            return None
        if resolved.tag == TIMESTAMP:
            assert isinstance(resolved.value, str)
            if _policy.options_timestamps_are_times():
                return Timestamp(resolved.value)
            return node.value
        if resolved.tag in (BOOL, INT, FLOAT):
            assert isinstance(resolved.value, bool | int | float)
            return resolved.value
        return node.value


def _str_list(go_name: str) -> Callable[[_Decoder, Node], object]:
    return lambda d, n: d.sequence(n, _Decoder.string, go_name)


_META = _Struct(
    "schematic.MetaValue",
    {"key": lambda d, n: d.unsigned(n, 8, "uint8"), "value": _Decoder.string},
    lambda v: MetaValue(key=v.get("key", 0), value=v.get("value", "")),
)
_SYSTEM_EXTENSIONS = _Struct(
    "schematic.SystemExtensions",
    {"officialExtensions": _str_list("[]string")},
    lambda v: v.get("officialExtensions", ()),
)
_SECUREBOOT = _Struct(
    "schematic.SecureBootCustomization",
    {"enrollKeys": _Decoder.string, "includeWellKnownCertificates": _Decoder.boolean},
    lambda v: SecureBoot(
        enroll_keys=v.get("enrollKeys", ""),
        include_well_known_certificates=v.get("includeWellKnownCertificates", False),
    ),
)
_DISK_IMAGE = _Struct(
    "schematic.DiskImage",
    {"sectorSize": lambda d, n: d.unsigned(n, 64, "uint")},
    lambda v: DiskImage(sector_size=v.get("sectorSize", 0)),
)
_CUSTOMIZATION = _Struct(
    "schematic.Customization",
    {
        "embeddedMachineConfiguration": _Decoder.string,
        "extraKernelArgs": _str_list("[]string"),
        "meta": lambda d, n: d.sequence(
            n, lambda d2, n2: d2.struct(n2, _META), "[]schematic.MetaValue"
        ),
        "systemExtensions": lambda d, n: d.struct(n, _SYSTEM_EXTENSIONS),
        "bootloader": _Decoder.bootloader,
        "secureboot": lambda d, n: d.struct(n, _SECUREBOOT),
        "diskImage": lambda d, n: d.struct(n, _DISK_IMAGE),
    },
    lambda v: Customization(
        embedded_machine_configuration=v.get("embeddedMachineConfiguration", ""),
        extra_kernel_args=v.get("extraKernelArgs", ()),
        meta=v.get("meta", ()),
        system_extensions=v.get("systemExtensions", ()),
        bootloader=v.get("bootloader", Bootloader.NONE),
        secureboot=v.get("secureboot", SecureBoot()),
        disk_image=v.get("diskImage", DiskImage()),
    ),
)
_OVERLAY = _Struct(
    "schematic.Overlay",
    {"image": _Decoder.string, "name": _Decoder.string, "options": _Decoder.options},
    lambda v: Overlay(
        image=v.get("image", ""), name=v.get("name", ""), options=v.get("options", OptionMap())
    ),
)
_SCHEMATIC = _Struct(
    "schematic.Schematic",
    {
        "owner": _Decoder.string,
        "overlay": lambda d, n: d.struct(n, _OVERLAY),
        "customization": lambda d, n: d.struct(n, _CUSTOMIZATION),
    },
    lambda v: Flavor(
        owner=v.get("owner", ""),
        overlay=v.get("overlay", Overlay()),
        customization=v.get("customization", Customization()),
    ),
)


def decode_flavor(data: bytes, *, allow_owner: bool = False) -> Flavor:
    """Decode a flavor document (YAML or JSON, first document only) strictly.

    Raises :class:`~image_service.flavor.errors.InvalidFlavor` with upstream's message: ``EOF`` for
    a body without any document, ``yaml: ...`` for syntax and type errors, and
    ``owner field is only supported in Enterprise edition`` for a non-empty ``owner`` unless
    ``allow_owner`` (the Enterprise build sets it after authenticating the owner).
    """
    root = compose_first_document(data)
    if root is None:
        raise InvalidFlavor("EOF")
    decoder = _Decoder()
    try:
        result = decoder.construct(root, lambda d, n: d.struct(n, _SCHEMATIC))
    except _Fatal as exc:
        raise InvalidFlavor(f"yaml: {exc}") from None
    except RecursionError as exc:  # a guard; MAX_DEPTH keeps recursion far below the limit
        raise InvalidFlavor("yaml: document is nested too deeply") from exc
    if decoder.error_count:
        shown = list(decoder.errors)
        if decoder.error_count > len(shown):
            shown.append(f"... ({decoder.error_count - len(shown)} more errors not shown)")
        raise InvalidFlavor("yaml: construct errors: " + "; ".join(shown))
    flavor = result if isinstance(result, Flavor) else Flavor()
    if flavor.owner and not allow_owner:
        raise InvalidFlavor(_OWNER_ERROR)
    return flavor
