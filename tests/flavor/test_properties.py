"""Property tests: canonical YAML is a fixed point and the ID ignores input formatting.

Flavors are generated with awkward strings (indicators, quotes, YAML 1.1 words, numbers and
dates as text, unicode, control characters, line breaks) and free-form options. Three known,
documented limits of upstream's format shape the strategies:

* multi-line strings starting with a space or a line break are kept out of sequences: go-yaml
  writes them as ``|4`` blocks two columns in, which no YAML parser reads back (go-yaml issue
  #643 / yaml/go-yaml #399); ``test_sequence_indentation_indicator_quirk`` pins the bytes;
* multi-line strings starting with a tab are not generated: go-yaml writes a literal block
  without an indentation indicator, and YAML parsers refuse a tab where the indentation is
  being detected (``test_leading_tab_literal_quirk``);
* floats that print as integers come back as integers (``2.0`` -> ``2``), and ``-0.0`` is not
  generated at all (``-0`` reads back as the integer 0, so upstream is not a fixed point there);
* keys of one map never print the same: ``True`` and ``"true"`` (or ``1`` and ``1.0``) are
  distinct keys in Go but come out as ``true:`` and ``"true":``, which go-yaml's duplicate check
  (same raw text) refuses to read back. Integral float keys are not generated at all (they
  would read back as integers).
"""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image_service.flavor._scalars import _SIMPLE, Style, _analyze, format_float, string_style
from image_service.flavor.canonical import canonical_yaml, flavor_id
from image_service.flavor.decode import decode_flavor
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
)

SETTINGS = settings(max_examples=150, deadline=None)

AWKWARD = [
    *["yes", "No", "ON", "off", "y", "N", "true", "False", "null", "~", "<<", "1:30"],
    *["123", "-7", "0x1f", "0777", "1_000", "1.5", "1e3", ".5", ".inf", "09", "2024-01-02"],
    *["2001-12-14t21:59:43.10Z", "-", "- x", "? x", ": x", "a: b", "key:", "#c", "a #b"],
    *[" lead", "trail ", "'q'", '"dq"', "it's", "---", "...", "", "[x]", "{a: b}", "&a", "*a"],
    *["!t", "|", ">", "%", "@", "`", ",", "café", "ж", "emoji😀", "tab\there", "cr\r", "nel\x85"],
    *["bom\ufeff", "ls\u2028x", "nul\x00", "console=ttyS1,115200n8", "-module.sig_enforce"],
]
PIECES = [*AWKWARD, " ", "  ", "\n", "\n\n", ":", "#", "-", "'", '"', "\t", "\u2029", "x", "1"]
LINE_BREAKS = ("\n", "\r", "\x85", "\u2028", "\u2029")


def _readable_literal(text: str) -> bool:
    return not ("\n" in text and text.startswith("\t"))


any_text = st.one_of(
    st.sampled_from(AWKWARD),
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.lists(st.sampled_from(PIECES), max_size=5).map("".join),
).filter(_readable_literal)


def _sequence_safe(text: str) -> bool:
    return not ("\n" in text and text.startswith((" ", *LINE_BREAKS)))


def _key_safe(text: str) -> bool:
    return len(text.encode()) <= 128 and not any(ch in text for ch in LINE_BREAKS)


seq_text = any_text.filter(_sequence_safe)
key_text = any_text.filter(_key_safe)


def _not_negative_zero(value: float) -> bool:
    return not (value == 0 and math.copysign(1.0, value) < 0)


finite_floats = st.floats(allow_nan=False, allow_infinity=False).filter(_not_negative_zero)
floats = st.one_of(finite_floats, st.sampled_from([math.inf, -math.inf]))


@st.composite
def timestamps(draw: st.DrawFn) -> Timestamp:
    """RFC 3339 texts exactly as Go formats them (what the decoder produces)."""
    moment = draw(st.datetimes())
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    nanos = draw(st.integers(0, 999_999_999))
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return Timestamp(text + draw(st.sampled_from(["Z", "+05:30", "-08:00", "+14:00"])))


def option_scalars(*, with_timestamps: bool) -> st.SearchStrategy[OptionValue]:
    choices: list[st.SearchStrategy[OptionValue]] = [
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        floats if with_timestamps else finite_floats,
        seq_text,
    ]
    if with_timestamps:
        choices.append(timestamps())
    return st.one_of(choices)


typed_keys: st.SearchStrategy[OptionKey] = st.one_of(
    key_text,
    st.integers(-(2**63), 2**64 - 1),
    st.booleans(),
    st.none(),
    floats.filter(lambda f: not f.is_integer()),
    timestamps(),
)


def _key_text(key: OptionKey) -> str:
    """The raw text a key is written with (what go-yaml's duplicate check compares)."""
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return format_float(key)
    if isinstance(key, Timestamp):
        return key.text
    return json.dumps(key)  # null, true, false, integers


def _map_of(
    keys: st.SearchStrategy[OptionKey], values: st.SearchStrategy[OptionValue]
) -> st.SearchStrategy[OptionMap]:
    pairs = st.lists(st.tuples(keys, values), max_size=3, unique_by=lambda kv: _key_text(kv[0]))
    return pairs.map(lambda items: OptionMap(tuple(items)))


def option_values(*, portable: bool) -> st.SearchStrategy[OptionValue]:
    """Option values; ``portable`` ones survive a trip through JSON (no timestamps, no inf,
    string keys only)."""
    nested_keys = key_text if portable else typed_keys
    return st.recursive(
        option_scalars(with_timestamps=not portable),
        lambda children: st.one_of(
            st.lists(children, max_size=3).map(tuple),
            _map_of(nested_keys, children),
        ),
        max_leaves=6,
    )


@st.composite
def flavors(draw: st.DrawFn, *, portable: bool = False) -> Flavor:
    options = draw(_map_of(key_text, option_values(portable=portable)))
    return Flavor(
        owner=draw(st.one_of(st.just(""), any_text)),
        overlay=Overlay(image=draw(any_text), name=draw(any_text), options=options),
        customization=Customization(
            embedded_machine_configuration=draw(any_text),
            extra_kernel_args=tuple(draw(st.lists(seq_text, max_size=3))),
            meta=tuple(
                MetaValue(key, value)
                for key, value in draw(
                    st.lists(st.tuples(st.integers(0, 255), seq_text), max_size=3)
                )
            ),
            system_extensions=tuple(draw(st.lists(seq_text, max_size=3))),
            bootloader=draw(st.sampled_from(Bootloader)),
            secureboot=SecureBoot(
                enroll_keys=draw(any_text), include_well_known_certificates=draw(st.booleans())
            ),
            disk_image=DiskImage(sector_size=draw(st.integers(0, 2**64 - 1))),
        ),
    )


def _normalise(value: OptionValue) -> OptionValue:
    """What a value reads back as: floats printed without a point or exponent become ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return int(value)
    if isinstance(value, tuple):
        return tuple(_normalise(item) for item in value)
    if isinstance(value, OptionMap):
        return OptionMap(tuple((k, _normalise(v)) for k, v in value.entries))
    return value


def normalised(flavor: Flavor) -> Flavor:
    overlay = flavor.overlay
    options = _normalise(overlay.options)
    assert isinstance(options, OptionMap)
    return Flavor(flavor.owner, Overlay(overlay.image, overlay.name, options), flavor.customization)


# --- fixed point -------------------------------------------------------------------------------


@SETTINGS
@given(flavors())
def test_decode_inverts_canonical(flavor: Flavor) -> None:
    assert decode_flavor(canonical_yaml(flavor), allow_owner=True) == normalised(flavor)


@SETTINGS
@given(flavors())
def test_canonical_is_a_fixed_point(flavor: Flavor) -> None:
    canonical = canonical_yaml(flavor)
    assert canonical_yaml(decode_flavor(canonical, allow_owner=True)) == canonical
    assert canonical.endswith(b"\n")
    assert not canonical.startswith(b"---")


# --- the ID does not depend on input formatting ------------------------------------------------


def _raw_ok(ch: str) -> bool:
    """Characters YAML takes raw inside double quotes (line separators would be folded)."""
    code = ord(ch)
    if ch in "\u2028\u2029\ufeff":
        return False
    return 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFFFD or code >= 0x10000


def _quote(text: str) -> str:
    """A double-quoted scalar valid in both JSON and YAML."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif _raw_ok(ch):
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}")
    out.append('"')
    return "".join(out)


def _scalar(value: object) -> str:
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if isinstance(value, Timestamp):
        return value.text
    return repr(value)


def _document(flavor: Flavor) -> dict[str, object]:
    """The flavor as plain data, with every optional field present (zero values included)."""
    custom = flavor.customization
    return {
        "owner": flavor.owner,
        "overlay": {
            "image": flavor.overlay.image,
            "name": flavor.overlay.name,
            "options": flavor.overlay.options,
        },
        "customization": {
            "embeddedMachineConfiguration": custom.embedded_machine_configuration,
            "extraKernelArgs": list(custom.extra_kernel_args),
            "meta": [{"key": m.key, "value": m.value} for m in custom.meta],
            "systemExtensions": {"officialExtensions": list(custom.system_extensions)},
            "bootloader": custom.bootloader.value,
            "secureboot": {
                "enrollKeys": custom.secureboot.enroll_keys,
                "includeWellKnownCertificates": custom.secureboot.include_well_known_certificates,
            },
            "diskImage": {"sectorSize": custom.disk_image.sector_size},
        },
    }


def _items(
    value: dict[object, object] | OptionMap, rng: random.Random
) -> list[tuple[object, object]]:
    items: list[tuple[object, object]] = list(
        value.entries if isinstance(value, OptionMap) else value.items()
    )
    rng.shuffle(items)
    return items


def _json(value: object, rng: random.Random) -> str:
    if isinstance(value, dict | OptionMap):
        return (
            "{"
            + ", ".join(f"{_quote(str(k))}: {_json(v, rng)}" for k, v in _items(value, rng))
            + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json(item, rng) for item in value) + "]"
    if isinstance(value, float):
        return json.dumps(value)
    return _scalar(value)


def _block(value: object, indent: int, step: int, rng: random.Random, compact: bool) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict | OptionMap):
        for key, item in _items(value, rng):
            head = f"{pad}{_scalar(key)}:"
            if isinstance(item, dict | OptionMap | list | tuple) and len(item):
                lines.append(head)
                child = indent if compact and isinstance(item, list | tuple) else indent + step
                lines += _block(item, child, step, rng, compact)
            else:
                lines.append(f"{head} {_inline(item)}")
    else:
        assert isinstance(value, list | tuple)
        for item in value:
            if isinstance(item, dict | OptionMap | list | tuple) and len(item):
                lines.append(f"{pad}-")
                lines += _block(item, indent + step, step, rng, compact)
            else:
                lines.append(f"{pad}- {_inline(item)}")
    return lines


def _inline(value: object) -> str:
    if isinstance(value, dict | OptionMap):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    return _scalar(value)


@SETTINGS
@given(flavors(portable=True), st.randoms(use_true_random=False))
def test_id_is_the_same_from_json(flavor: Flavor, rng: random.Random) -> None:
    body = _json(_document(flavor), rng).encode()
    decoded = decode_flavor(body, allow_owner=True)
    assert flavor_id(canonical_yaml(decoded)) == flavor_id(canonical_yaml(flavor))


@SETTINGS
@given(flavors(), st.randoms(use_true_random=False), st.integers(1, 5), st.booleans())
def test_id_is_the_same_from_other_block_yaml(
    flavor: Flavor, rng: random.Random, step: int, compact: bool
) -> None:
    body = "\n".join(_block(_document(flavor), 0, step, rng, compact)) + "\n"
    decoded = decode_flavor(body.encode(), allow_owner=True)
    assert flavor_id(canonical_yaml(decoded)) == flavor_id(canonical_yaml(flavor))


# --- emitter internals -------------------------------------------------------------------------


@SETTINGS
@given(st.from_regex(_SIMPLE, fullmatch=True))
def test_fast_path_agrees_with_the_full_analysis(text: str) -> None:
    analysis = _analyze(text)
    assert analysis.plain_allowed
    assert analysis.single_allowed
    assert string_style(text) in (Style.PLAIN, Style.SINGLE, Style.DOUBLE)


# --- documented upstream quirks ----------------------------------------------------------------


def test_sequence_indentation_indicator_quirk() -> None:
    # §4.7: indicator 4 because the value starts with a space; content two columns after the
    # dash (§4.3). A YAML parser expects the content four columns in, so this does not read back.
    flavor = Flavor(customization=Customization(extra_kernel_args=(" a\nb",)))
    canonical = canonical_yaml(flavor)
    assert (
        canonical
        == b"customization:\n    extraKernelArgs:\n        - |4-\n           a\n          b\n"
    )
    with pytest.raises(InvalidFlavor):
        decode_flavor(canonical)


def test_negative_zero_is_not_a_fixed_point_upstream_either() -> None:
    flavor = Flavor(overlay=Overlay(name="x", options=OptionMap.of({"z": -0.0})))
    canonical = canonical_yaml(flavor)
    assert b"        z: -0\n" in canonical
    assert decode_flavor(canonical).overlay.options == OptionMap.of({"z": 0})


def test_leading_tab_literal_quirk() -> None:
    # Tabs are allowed in literal blocks, and no indentation indicator is written for a tab.
    flavor = Flavor(customization=Customization(embedded_machine_configuration="\tx\ny\n"))
    canonical = canonical_yaml(flavor)
    assert (
        canonical
        == b"customization:\n    embeddedMachineConfiguration: |\n        \tx\n        y\n"
    )
    with pytest.raises(InvalidFlavor, match="found a tab character where an indentation space"):
        decode_flavor(canonical)
