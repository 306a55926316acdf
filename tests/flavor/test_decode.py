"""The strict decoder: accepted spellings, go-yaml's typing rules and every error message.

Error texts come from ``schematic.md`` §3/§7 and ``api.md`` §2.4 where those give them; the
rest follow go-yaml's wording (``cannot unmarshal !!<tag> `<value>` into <Go type>``).
"""

from __future__ import annotations

import math

import pytest

import image_service.flavor._compose as compose
from image_service.flavor.canonical import canonical_yaml, flavor_id
from image_service.flavor.decode import decode_flavor
from image_service.flavor.errors import InvalidFlavor
from image_service.flavor.model import (
    Bootloader,
    Customization,
    Flavor,
    MetaValue,
    OptionMap,
    Overlay,
    SecureBoot,
    Timestamp,
)

EMPTY_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"


def construct_error(*parts: str) -> str:
    return "yaml: construct errors: " + "; ".join(parts)


# --- error messages ----------------------------------------------------------------------------

ERRORS = [
    # schematic.md §7 / api.md §2.4, verbatim.
    (b"", "EOF"),
    (
        b"something:",
        construct_error("line 1: field something not found in type schematic.Schematic"),
    ),
    (b"owner: alice", "owner field is only supported in Enterprise edition"),
    # A stream without any document is EOF too (go-yaml's Decoder finds no document).
    (b"   \n", "EOF"),
    (b"# just a comment\n", "EOF"),
    # Unknown fields, named by the Go struct they were looked up in.
    (
        b"Customization: {}",
        construct_error("line 1: field Customization not found in type schematic.Schematic"),
    ),
    (
        b"customization:\n  foo: 1\n",
        construct_error("line 2: field foo not found in type schematic.Customization"),
    ),
    (
        b"overlay:\n  bar: 1\n",
        construct_error("line 2: field bar not found in type schematic.Overlay"),
    ),
    (
        b"customization:\n  meta:\n    - key: 1\n      value: a\n      extra: b\n",
        construct_error("line 5: field extra not found in type schematic.MetaValue"),
    ),
    (
        b"customization:\n  systemExtensions:\n    official: []\n",
        construct_error("line 3: field official not found in type schematic.SystemExtensions"),
    ),
    (
        b"customization:\n  secureboot:\n    enroll: force\n",
        construct_error("line 3: field enroll not found in type schematic.SecureBootCustomization"),
    ),
    (
        b"customization:\n  diskImage:\n    size: 4096\n",
        construct_error("line 3: field size not found in type schematic.DiskImage"),
    ),
    (
        b"a: 1\nb: 2\n",
        construct_error(
            "line 1: field a not found in type schematic.Schematic",
            "line 2: field b not found in type schematic.Schematic",
        ),
    ),
    # Duplicate keys.
    (
        b"customization: {}\ncustomization: {}\n",
        construct_error('line 2: mapping key "customization" already defined at line 1'),
    ),
    (
        b"overlay:\n  options:\n    a: 1\n    'a': 2\n",
        construct_error('line 4: mapping key "a" already defined at line 3'),
    ),
    (
        b"customization:\n  extraKernelArgs: []\n  extraKernelArgs: []\n  extraKernelArgs: []\n",
        construct_error(
            'line 3: mapping key "extraKernelArgs" already defined at line 2',
            'line 4: mapping key "extraKernelArgs" already defined at line 2',
            'line 4: mapping key "extraKernelArgs" already defined at line 3',
        ),
    ),
    # Wrong kinds and types.
    (
        b"customization:\n  extraKernelArgs: foo\n",
        construct_error("line 2: cannot unmarshal !!str `foo` into []string"),
    ),
    (
        b"customization:\n  extraKernelArgs: {a: b}\n",
        construct_error("line 2: cannot unmarshal !!map into []string"),
    ),
    (
        b"customization:\n  extraKernelArgs: [[a]]\n",
        construct_error("line 2: cannot unmarshal !!seq into string"),
    ),
    (
        b"customization: foo\n",
        construct_error("line 1: cannot unmarshal !!str `foo` into schematic.Customization"),
    ),
    (
        b"customization: [a]\n",
        construct_error("line 1: cannot unmarshal !!seq into schematic.Customization"),
    ),
    (
        b"just text\n",
        construct_error("line 1: cannot unmarshal !!str `just text` into schematic.Schematic"),
    ),
    (
        b"customization:\n  systemExtensions:\n    officialExtensions: siderolabs/gvisor\n",
        construct_error("line 3: cannot unmarshal !!str `siderol...` into []string"),
    ),
    (
        b"customization:\n  meta: {key: 1}\n",
        construct_error("line 2: cannot unmarshal !!map into []schematic.MetaValue"),
    ),
    (
        b"customization:\n  meta: [foo]\n",
        construct_error("line 2: cannot unmarshal !!str `foo` into schematic.MetaValue"),
    ),
    # meta[].key: an integer 0..255 in any notation; nothing else.
    (
        b"customization:\n  meta:\n    - key: 256\n      value: x\n",
        construct_error("line 3: cannot unmarshal !!int `256` into uint8"),
    ),
    (
        b"customization:\n  meta:\n    - {key: -1, value: x}\n",
        construct_error("line 3: cannot unmarshal !!int `-1` into uint8"),
    ),
    (
        b'customization:\n  meta:\n    - {key: "10", value: x}\n',
        construct_error("line 3: cannot unmarshal !!str `10` into uint8"),
    ),
    (
        b"customization:\n  meta:\n    - {key: 10.0, value: x}\n",
        construct_error("line 3: cannot unmarshal !!float `10.0` into uint8"),
    ),
    (
        b"customization:\n  meta:\n    - {key: true, value: x}\n",
        construct_error("line 3: cannot unmarshal !!bool `true` into uint8"),
    ),
    (
        b"customization:\n  meta:\n    - {key: 0x100, value: x}\n",
        construct_error("line 3: cannot unmarshal !!int `0x100` into uint8"),
    ),
    # diskImage.sectorSize: a non-negative integer.
    (
        b"customization:\n  diskImage:\n    sectorSize: -1\n",
        construct_error("line 3: cannot unmarshal !!int `-1` into uint"),
    ),
    (
        b"customization:\n  diskImage:\n    sectorSize: 18446744073709551616\n",
        construct_error("line 3: cannot unmarshal !!float `1844674...` into uint"),
    ),
    (
        b"customization:\n  diskImage:\n    sectorSize: 4096.0\n",
        construct_error("line 3: cannot unmarshal !!float `4096.0` into uint"),
    ),
    # Booleans: true/false spellings and the YAML 1.1 words only.
    (
        b"customization:\n  secureboot:\n    includeWellKnownCertificates: maybe\n",
        construct_error("line 3: cannot unmarshal !!str `maybe` into bool"),
    ),
    (
        b"customization:\n  secureboot:\n    includeWellKnownCertificates: 1\n",
        construct_error("line 3: cannot unmarshal !!int `1` into bool"),
    ),
    (
        b'customization:\n  secureboot:\n    includeWellKnownCertificates: "true"\n',
        construct_error("line 3: cannot unmarshal !!str `true` into bool"),
    ),
    # bootloader: the enum, matched exactly then case-insensitively; `auto` is not a value.
    (
        b"customization:\n  bootloader: auto\n",
        construct_error("line 2: auto does not belong to BootloaderKind values"),
    ),
    (
        b"customization:\n  bootloader: uefi\n",
        construct_error("line 2: uefi does not belong to BootloaderKind values"),
    ),
    (
        b'customization:\n  bootloader: ""\n',
        construct_error("line 2:  does not belong to BootloaderKind values"),
    ),
    (
        b"customization:\n  bootloader: [grub]\n",
        construct_error("line 2: cannot unmarshal !!seq into schematic.BootloaderKind"),
    ),
    # overlay.options must be a mapping.
    (
        b"overlay:\n  options: [a]\n",
        construct_error("line 2: cannot unmarshal !!seq into map[string]interface {}"),
    ),
    # §4.9 current: an unquoted timestamp cannot go into a string field.
    (
        b"customization:\n  meta:\n    - key: 1\n      value: 2024-01-02\n",
        construct_error("line 4: cannot unmarshal !!timestamp `2024-01-02` into string"),
    ),
    # Explicit tags that do not fit their text stop decoding (go-yaml's "cannot decode").
    (
        b"customization:\n  meta:\n    - {key: !!bool 1, value: x}\n",
        "yaml: cannot decode !!int `1` as a !!bool",
    ),
    # Things refused on purpose.
    (b"<<: {customization: {}}\n", "yaml: line 1: merge keys (<<) are not supported"),
    (
        b"customization:\n  extraKernelArgs: [!!binary aGk=]\n",
        "yaml: line 2: !!binary values are not supported",
    ),
    (
        b"overlay:\n  options:\n    " + b"k" * 129 + b": v\n",
        "yaml: line 3: overlay option keys must be single-line and at most 128 bytes",
    ),
    (
        b'overlay:\n  options:\n    "a\\nb": v\n',
        "yaml: line 3: overlay option keys must be single-line and at most 128 bytes",
    ),
    # Aliases.
    (b"customization: *x\n", "yaml: line 1: unknown anchor 'x' referenced"),
    (b"overlay: {options: {a: &a [*a]}}\n", "yaml: anchor 'a' value contains itself"),
]


@pytest.mark.parametrize(("body", "message"), ERRORS)
def test_error_messages(body: bytes, message: str) -> None:
    with pytest.raises(InvalidFlavor) as caught:
        decode_flavor(body)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"a: b: c\n", "mapping values are not allowed in this context"),
        (b"customization: [a,\n", "did not find expected node content"),
        (b"customization:\n\textraKernelArgs: []\n", "found character that cannot start any token"),
        (b"customization: 'open\n", "found unexpected end of stream"),
        (b"customization: {extraKernelArgs: [\x01]}\n", "control characters are not allowed"),
        (b"customization: \xff\xfe\xfd\n", "invalid leading UTF-8 octet"),
        (
            b'customization: {extraKernelArgs: ["\\ud83d"]}\n',
            "found invalid Unicode character escape code",
        ),
    ],
)
def test_invalid_yaml(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidFlavor) as caught:
        decode_flavor(body)
    message = str(caught.value)
    assert message.startswith("yaml: ")
    assert message.endswith(problem)


def test_unexpected_parser_failure_becomes_invalid_flavor(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exploding:
        def __init__(self, data: bytes) -> None:
            del data

        def get_event(self) -> None:
            raise RuntimeError("boom")

        def dispose(self) -> None:
            pass

    monkeypatch.setattr(compose, "_LOADER", Exploding)
    with pytest.raises(InvalidFlavor, match=r"^yaml: cannot parse the document: boom$"):
        decode_flavor(b"customization: {}")


def test_owner_is_accepted_when_allowed() -> None:
    assert decode_flavor(b"owner: alice\n", allow_owner=True) == Flavor(owner="alice")
    assert decode_flavor(b'owner: ""\n') == Flavor()


def test_unknown_field_error_wins_over_owner() -> None:
    with pytest.raises(InvalidFlavor, match="field nope not found"):
        decode_flavor(b"owner: alice\nnope: 1\n")


# --- abuse -------------------------------------------------------------------------------------


def billion_laughs(levels: int) -> bytes:
    lines = [
        b"overlay:",
        b"  options:",
        b"    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
    ]
    for level in range(1, levels):
        refs = b", ".join([b"*l%d" % (level - 1)] * 9)
        lines.append(b"    l%d: &l%d [%s]" % (level, level, refs))
    return b"\n".join(lines) + b"\n"


@pytest.mark.timeout(60)
def test_billion_laughs_is_refused() -> None:
    with pytest.raises(InvalidFlavor, match=r"^yaml: document contains excessive aliasing$"):
        decode_flavor(billion_laughs(12))


@pytest.mark.timeout(60)
def test_aliases_of_a_huge_string_are_refused() -> None:
    body = (
        b"overlay:\n  options:\n    a: &a "
        + b"x" * 500_000
        + b"\n    b: ["
        + b"*a, " * 1000
        + b"*a]\n"
    )
    with pytest.raises(InvalidFlavor, match="excessive aliasing"):
        decode_flavor(body)


def test_modest_aliasing_is_fine() -> None:
    flavor = decode_flavor(billion_laughs(2))
    assert flavor.overlay.options.entries[1][1] == (("lol",) * 9,) * 9


@pytest.mark.parametrize(
    "body", [b"[" * 200_000, b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 300))]
)
def test_deep_nesting_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidFlavor, match="nests deeper than 100 levels"):
        decode_flavor(body)


def test_alias_chains_cannot_nest_deeper_than_the_limit() -> None:
    lines = [b"overlay:", b"  options:", b"    x0: &x0 [a]"]
    lines += [b"    x%d: &x%d [*x%d]" % (i, i, i - 1) for i in range(1, 120)]
    with pytest.raises(InvalidFlavor, match="nests deeper than 100 levels"):
        decode_flavor(b"\n".join(lines) + b"\n")


def test_many_errors_are_summarised() -> None:
    body = b"".join(b"k%d: v\n" % i for i in range(1000))
    with pytest.raises(InvalidFlavor) as caught:
        decode_flavor(body)
    message = str(caught.value)
    assert message.count("not found in type schematic.Schematic") == 100
    assert message.endswith("... (900 more errors not shown)")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "body",
    [
        b"customization: {extraKernelArgs: [" + b"a," * 400_000 + b"a]}",
        b"customization:\n  extraKernelArgs:\n" + b"    - console=ttyS1,115200n8\n" * 35_000,
        b"overlay:\n  options:\n"
        + b"".join(b"    key%d: value%d\n" % (i, i) for i in range(40_000)),
        b"customization:\n  embeddedMachineConfiguration: |\n" + b"    a: b\n" * 110_000,
    ],
    ids=["flow-list", "block-list", "options", "literal"],
)
def test_one_mebibyte_documents_decode(body: bytes) -> None:
    assert len(body) <= 1 << 20
    canonical_yaml(decode_flavor(body))


# --- accepted input ----------------------------------------------------------------------------


def meta_value(raw: bytes) -> str:
    flavor = decode_flavor(b"customization:\n  meta:\n    - key: 1\n      value: " + raw + b"\n")
    return flavor.customization.meta[0].value


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"0x1f", "0x1f"),
        (b"1.50", "1.50"),
        (b"yes", "yes"),
        (b"1e3", "1e3"),
        (b"010", "010"),
        (b"true", "true"),
        (b".inf", ".inf"),
        (b"'~'", "~"),
        (b'"null"', "null"),
        (b"null", ""),
        (b"~", ""),
        (b"", ""),
        (b'"2024-01-02"', "2024-01-02"),
        (b"!!str 2024-01-02", "2024-01-02"),
        (b"a  b", "a  b"),
        (b"|\n        line1\n        line2", "line1\nline2\n"),
        (b">-\n        folded\n        text", "folded text"),
        (b'"caf\\u00e9 \\t"', "café \t"),
    ],
)
def test_string_fields_keep_the_raw_text(raw: bytes, value: str) -> None:
    assert meta_value(raw) == value


def test_null_and_typed_items_in_string_lists() -> None:
    flavor = decode_flavor(b"customization:\n  extraKernelArgs: [a, ~, 1, true, 1.5, null, b]\n")
    # go-yaml drops null items of a typed list; other scalars keep their text.
    assert flavor.customization.extra_kernel_args == ("a", "1", "true", "1.5", "b")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        *[(raw, 10) for raw in [b"10", b"0xa", b"0o12", b"0b1010", b"012", b"1_0", b"+10"]],
        (b"!!int '10'", 10),
        (b"0", 0),
        (b"255", 255),
        (b"0xFF", 255),
        (b"~", 0),
    ],
)
def test_meta_key_notations(raw: bytes, key: int) -> None:
    flavor = decode_flavor(b"customization:\n  meta:\n    - {key: " + raw + b", value: v}\n")
    assert flavor.customization.meta == (MetaValue(key, "v"),)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        *[
            (word, True)
            for word in [b"true", b"True", b"TRUE", b"y", b"Y", b"yes", b"Yes", b"on", b"ON"]
        ],
        *[
            (word, False)
            for word in [b"false", b"False", b"FALSE", b"n", b"no", b"NO", b"off", b"Off"]
        ],
        (b'"yes"', True),
        (b"~", False),
    ],
)
def test_boolean_spellings(raw: bytes, value: bool) -> None:
    flavor = decode_flavor(
        b"customization:\n  secureboot:\n    includeWellKnownCertificates: " + raw + b"\n"
    )
    assert flavor.customization.secureboot == SecureBoot(include_well_known_certificates=value)


@pytest.mark.parametrize(
    ("raw", "bootloader"),
    [
        (b"grub", Bootloader.GRUB),
        (b"GRUB", Bootloader.GRUB),
        (b"Dual-Boot", Bootloader.DUAL_BOOT),
        (b"sd-boot", Bootloader.SD_BOOT),
        (b"SD-BOOT", Bootloader.SD_BOOT),
        (b"none", Bootloader.NONE),
        (b"None", Bootloader.NONE),
        (b"~", Bootloader.NONE),
    ],
)
def test_bootloader_names(raw: bytes, bootloader: Bootloader) -> None:
    flavor = decode_flavor(b"customization:\n  bootloader: " + raw + b"\n")
    assert flavor.customization.bootloader is bootloader


def test_only_the_first_document_is_read() -> None:
    body = b"customization:\n  extraKernelArgs: [quiet]\n---\nnot: [valid\n"
    assert decode_flavor(body) == Flavor(customization=Customization(extra_kernel_args=("quiet",)))


@pytest.mark.parametrize(
    "body",
    [
        "customization: {}\n".encode("utf-16"),
        b"\xef\xbb\xbfcustomization: {}\n",
        b"customization:\r\n  extraKernelArgs: []\r\n",
        b"%YAML 1.1\n---\ncustomization: {}\n",
        b"overlay: ~\ncustomization: ~\n",
        b"overlay:\n  options: ~\n",
        b"customization: !!map {}\n",
        b"~: ignored\n",
    ],
    ids=[
        "utf-16",
        "utf-8-bom",
        "crlf",
        "directive",
        "nulls",
        "null-options",
        "tagged-map",
        "null-key",
    ],
)
def test_other_spellings_of_the_empty_flavor(body: bytes) -> None:
    assert flavor_id(canonical_yaml(decode_flavor(body))) == EMPTY_ID


def test_json_string_escapes() -> None:
    body = (
        b'{"customization": {"extraKernelArgs": '
        b'["caf\\u00e9", "tab\\there", "quote\\"", "nul\\u0000"]}}'
    )
    flavor = decode_flavor(body)
    assert flavor.customization.extra_kernel_args == ("café", "tab\there", 'quote"', "nul\x00")


def test_aliases_expand() -> None:
    body = b"overlay:\n  options:\n    a: &v [1, {k: v}]\n    b: *v\n"
    expected = (1, OptionMap.of({"k": "v"}))
    assert decode_flavor(body).overlay.options == OptionMap.of({"a": expected, "b": expected})


def test_alias_as_a_struct_key_counts_as_a_second_field() -> None:
    body = b"overlay: {name: &n name, *n : other}\n"
    with pytest.raises(InvalidFlavor, match=r"field name already set in type schematic\.Overlay"):
        decode_flavor(body)


# --- overlay.options typing --------------------------------------------------------------------


def option(raw: bytes) -> object:
    flavor = decode_flavor(b"overlay:\n  options:\n    v: " + raw + b"\n")
    return dict(flavor.overlay.options.entries)["v"]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"10", 10),
        (b"0x10", 16),
        (b"0o17", 15),
        (b"017", 15),
        (b"0b11", 3),
        (b"-0x10", -16),
        (b"1_000", 1000),
        (b"9223372036854775807", 9223372036854775807),
        (b"18446744073709551615", 18446744073709551615),
        (b"18446744073709551616", 18446744073709551616.0),
        (b"1.5", 1.5),
        (b"1.0", 1.0),
        (b"1e3", 1000.0),
        (b".5", 0.5),
        (b"09", 9.0),
        (b"-.inf", -math.inf),
        (b"1e400", "1e400"),  # Go reports the overflow; the scalar stays a string
        (b"true", True),
        (b"False", False),
        (b"yes", "yes"),
        (b"~", None),
        (b"null", None),
        (b'"10"', "10"),
        (b"'true'", "true"),
        (b"!!str 10", "10"),
        (b"!!float 10", 10.0),
        (b"<<", "<<"),
        (b"2024-01-02", Timestamp("2024-01-02T00:00:00Z")),
        (b"2001-12-14t21:59:43.10-05:00", Timestamp("2001-12-14T21:59:43.1-05:00")),
        (b"2001-12-14 21:59:43.123456789123", Timestamp("2001-12-14T21:59:43.123456789Z")),
        (b"2024-02-30", "2024-02-30"),
        (b"[]", ()),
        (b"{}", OptionMap()),
        (b"[a, ~, [1]]", ("a", None, (1,))),
    ],
)
def test_option_values_are_typed_like_go_yaml(raw: bytes, value: object) -> None:
    decoded = option(raw)
    assert type(decoded) is type(value)
    if isinstance(value, float) and math.isnan(value):
        assert isinstance(decoded, float)
        assert math.isnan(decoded)
    else:
        assert decoded == value


def test_option_nan() -> None:
    decoded = option(b".NaN")
    assert isinstance(decoded, float)
    assert math.isnan(decoded)


def test_top_level_option_keys_are_strings() -> None:
    flavor = decode_flavor(
        b"overlay:\n  options:\n    1: a\n    true: b\n    1.5: c\n    ~: dropped\n"
    )
    assert flavor.overlay.options == OptionMap.of({"1": "a", "true": "b", "1.5": "c"})


def test_nested_option_maps_keep_typed_keys() -> None:
    flavor = decode_flavor(
        b"overlay:\n  options:\n    m: {1: a, 0x1: b, 1.0: c, true: d, ~: e, s: f}\n"
    )
    nested = dict(flavor.overlay.options.entries)["m"]
    # 1 and 0x1 are the same Go key (the later wins); 1.0 and true are different keys.
    assert nested == OptionMap(((1, "b"), (1.0, "c"), (True, "d"), (None, "e"), ("s", "f")))


def test_option_map_equality_is_type_strict() -> None:
    assert OptionMap.of({"a": 1}) != OptionMap.of({"a": 1.0})
    assert OptionMap.of({"a": 1}) != OptionMap.of({"a": True})
    assert OptionMap.of({"a": (1,)}) == OptionMap.of({"a": (1,)})
    assert hash(OptionMap.of({"a": 1})) == hash(OptionMap.of({"a": 1}))


def test_model_validation() -> None:
    with pytest.raises(ValueError, match="META key"):
        MetaValue(256, "x")
    with pytest.raises(ValueError, match="duplicate overlay option key"):
        OptionMap((("a", 1), ("a", 2)))
    with pytest.raises(TypeError, match="keys must be strings"):
        Overlay(options=OptionMap(((1, "a"),)))
    with pytest.raises(TypeError, match="unsupported overlay option value"):
        OptionMap((("a", [1]),))  # type: ignore[arg-type]


def test_decoded_flavor_is_hashable() -> None:
    flavor = decode_flavor(b"overlay: {name: x, options: {a: [1, {b: c}]}}\n")
    assert hash(flavor) == hash(decode_flavor(b"overlay: {options: {a: [1, {b: c}]}, name: x}\n"))
    assert flavor.overlay == Overlay(
        name="x", options=OptionMap.of({"a": (1, OptionMap.of({"b": "c"}))})
    )
