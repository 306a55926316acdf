"""The canonical emitter against the worked examples and rules of ``schematic.md`` §4.

Expected texts are the spec's examples verbatim, or written by hand from the spec's rules (the
comment says which rule). Where the spec's example contradicts its own rules, the test says so.
"""

from __future__ import annotations

import math

import pytest

from image_service.flavor._keysort import sorted_keys
from image_service.flavor._scalars import Style, format_float, string_style
from image_service.flavor.canonical import canonical_yaml, emit_mapping, flavor_id
from image_service.flavor.decode import decode_flavor
from image_service.flavor.errors import InvalidFlavor
from image_service.flavor.model import (
    Bootloader,
    Customization,
    DiskImage,
    Flavor,
    MetaValue,
    OptionMap,
    OptionValue,
    Overlay,
    SecureBoot,
    Timestamp,
)

YAML11_WORDS = ["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO"]
YAML11_WORDS += ["on", "On", "ON", "off", "Off", "OFF"]


def args(*values: str) -> Flavor:
    return Flavor(customization=Customization(extra_kernel_args=values))


def text(flavor: Flavor) -> str:
    return canonical_yaml(flavor).decode("utf-8")


def options(mapping: dict[str, OptionValue], name: str = "x") -> Flavor:
    return Flavor(overlay=Overlay(name=name, options=OptionMap.of(mapping)))


# --- §4.10 worked examples ---------------------------------------------------------------------

ALL_FIELDS = """\
owner: alice
overlay:
    image: siderolabs/sbc-raspberrypi
    name: rpi_generic
    options:
        configTxtAppend: dtoverlay=disable-bt
customization:
    embeddedMachineConfiguration: |
        apiVersion: v1alpha1
        kind: HostnameConfig
        hostname: node-1
    extraKernelArgs:
        - console=ttyS1,115200n8
        - -module.sig_enforce
    meta:
        - key: 12
          value: rack-7
    systemExtensions:
        officialExtensions:
            - siderolabs/zfs
            - siderolabs/amd-ucode
    bootloader: dual-boot
    secureboot:
        enrollKeys: force
        includeWellKnownCertificates: true
    diskImage:
        sectorSize: 4096
"""


def test_all_fields_example() -> None:
    flavor = Flavor(
        owner="alice",
        overlay=Overlay(
            image="siderolabs/sbc-raspberrypi",
            name="rpi_generic",
            options=OptionMap.of({"configTxtAppend": "dtoverlay=disable-bt"}),
        ),
        customization=Customization(
            embedded_machine_configuration=(
                "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: node-1\n"
            ),
            extra_kernel_args=("console=ttyS1,115200n8", "-module.sig_enforce"),
            meta=(MetaValue(12, "rack-7"),),
            system_extensions=("siderolabs/zfs", "siderolabs/amd-ucode"),
            bootloader=Bootloader.DUAL_BOOT,
            secureboot=SecureBoot(enroll_keys="force", include_well_known_certificates=True),
            disk_image=DiskImage(sector_size=4096),
        ),
    )
    assert text(flavor) == ALL_FIELDS
    assert decode_flavor(ALL_FIELDS.encode(), allow_owner=True) == flavor


def test_single_quote_examples() -> None:
    flavor = args(
        "talos.config=http://10.0.0.1/c.yaml #x", "it's", "'quoted'", " lead", "-", "a: b", "key:"
    )
    assert text(flavor) == (
        "customization:\n"
        "    extraKernelArgs:\n"
        "        - 'talos.config=http://10.0.0.1/c.yaml #x'\n"
        "        - it's\n"
        "        - '''quoted'''\n"
        "        - ' lead'\n"
        "        - '-'\n"
        "        - 'a: b'\n"
        "        - 'key:'\n"
    )


def test_meta_value_styles() -> None:
    meta = tuple(
        MetaValue(key, value)
        for key, value in [(13, "123"), (14, "true"), (15, ""), (16, "0x1f"), (17, "2024-01-02")]
    )
    assert text(Flavor(customization=Customization(meta=meta))) == (
        "customization:\n"
        "    meta:\n"
        "        - key: 13\n"
        '          value: "123"\n'
        "        - key: 14\n"
        '          value: "true"\n'
        "        - key: 15\n"
        '          value: ""\n'
        "        - key: 16\n"
        '          value: "0x1f"\n'
        "        - key: 17\n"
        '          value: "2024-01-02"\n'
    )


def test_meta_value_written_unquoted_keeps_its_text() -> None:
    flavor = decode_flavor(b"customization:\n  meta:\n    - key: 16\n      value: 0x1f\n")
    assert flavor.customization.meta == (MetaValue(16, "0x1f"),)


def test_multi_line_meta_value_content_at_column_12() -> None:
    flavor = Flavor(customization=Customization(meta=(MetaValue(12, "a\nb\n"),)))
    assert text(flavor) == (
        "customization:\n"
        "    meta:\n"
        "        - key: 12\n"
        "          value: |\n"
        "            a\n"
        "            b\n"
    )


def test_meta_value_json_array_is_single_quoted() -> None:
    value = '[{"interface":"eth0","dhcp":true}]'
    flavor = Flavor(customization=Customization(meta=(MetaValue(12, value),)))
    assert text(flavor) == (
        "customization:\n"
        "    meta:\n"
        "        - key: 12\n"
        '          value: \'[{"interface":"eth0","dhcp":true}]\'\n'
    )


def emc(value: str) -> Flavor:
    return Flavor(customization=Customization(embedded_machine_configuration=value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # §4.10 chomping variants.
        ("line1\nline2", "    embeddedMachineConfiguration: |-\n        line1\n        line2\n"),
        ("a\n\nb\n\n", "    embeddedMachineConfiguration: |+\n        a\n\n        b\n\n"),
        ("trailing \nx\n", '    embeddedMachineConfiguration: "trailing \\nx\\n"\n'),
        # §4.7: indentation indicator when the first character is a space or a line break.
        (" indented\nx\n", "    embeddedMachineConfiguration: |4\n         indented\n        x\n"),
        ("\nx\n", "    embeddedMachineConfiguration: |4\n\n        x\n"),
        (" a\nb", "    embeddedMachineConfiguration: |4-\n         a\n        b\n"),
        (" a\nb\n\n", "    embeddedMachineConfiguration: |4+\n         a\n        b\n\n"),
        # §4.5 step A: a whole string ending with a space, a non-printable character.
        ("a\nb ", '    embeddedMachineConfiguration: "a\\nb "\n'),
        ("a\nb\x07\n", '    embeddedMachineConfiguration: "a\\nb\\a\\n"\n'),
        # A tab is not "non-printable" for literal blocks (only for plain/single quotes).
        ("a\tb\nc\n", "    embeddedMachineConfiguration: |\n        a\tb\n        c\n"),
        # §4.9 current: whitespace-only or one-byte multi-line strings are double-quoted.
        ("\n", '    embeddedMachineConfiguration: "\\n"\n'),
        ("  \n\n", '    embeddedMachineConfiguration: "  \\n\\n"\n'),
        ("\n\n", '    embeddedMachineConfiguration: "\\n\\n"\n'),
    ],
)
def test_literal_blocks(value: str, expected: str) -> None:
    assert text(emc(value)) == "customization:\n" + expected


def test_literal_is_followed_by_the_next_key() -> None:
    flavor = Flavor(
        customization=Customization(
            embedded_machine_configuration="a: 1\n", extra_kernel_args=("quiet",)
        )
    )
    assert text(flavor) == (
        "customization:\n"
        "    embeddedMachineConfiguration: |\n"
        "        a: 1\n"
        "    extraKernelArgs:\n"
        "        - quiet\n"
    )


def test_literal_in_a_sequence_item_starts_two_columns_after_the_dash() -> None:
    assert (
        text(args("a\nb"))
        == "customization:\n    extraKernelArgs:\n        - |-\n          a\n          b\n"
    )


def test_overlay_with_only_a_name() -> None:
    flavor = Flavor(overlay=Overlay(name="rpi_generic"))
    assert text(flavor) == 'overlay:\n    image: ""\n    name: rpi_generic\ncustomization: {}\n'


def test_non_ascii_kernel_arguments() -> None:
    assert text(args("café", "emoji😀", "crlf\r")) == (
        "customization:\n"
        "    extraKernelArgs:\n"
        "        - café\n"
        '        - "emoji\\U0001F600"\n'
        '        - "crlf\\r"\n'
    )


# --- §4.5 style decisions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        # The compact summary table.
        ("noapic", "noapic"),
        ("console=ttyS1,115200n8", "console=ttyS1,115200n8"),
        ("-module.sig_enforce", "-module.sig_enforce"),
        ("it's", "it's"),
        ("123", '"123"'),
        ("true", '"true"'),
        ("", '""'),
        ("2024-01-02", '"2024-01-02"'),
        ("a: b", "'a: b'"),
        ("'quoted'", "'''quoted'''"),
        (" lead", "' lead'"),
        ("tab\there", '"tab\\there"'),
        # Step B: null, booleans, special floats.
        ("~", '"~"'),
        ("null", '"null"'),
        ("Null", '"Null"'),
        ("NULL", '"NULL"'),
        ("True", '"True"'),
        ("TRUE", '"TRUE"'),
        ("false", '"false"'),
        ("False", '"False"'),
        ("FALSE", '"FALSE"'),
        (".nan", '".nan"'),
        (".NaN", '".NaN"'),
        (".NAN", '".NAN"'),
        (".inf", '".inf"'),
        (".Inf", '".Inf"'),
        ("+.INF", '"+.INF"'),
        ("-.inf", '"-.inf"'),
        # Step B: integers in every Go notation.
        ("10", '"10"'),
        ("-3", '"-3"'),
        ("0x1f", '"0x1f"'),
        ("1_000", '"1_000"'),
        ("0777", '"0777"'),
        ("0o17", '"0o17"'),
        ("0b101", '"0b101"'),
        ("18446744073709551615", '"18446744073709551615"'),
        # Step B: floats.
        ("1.5", '"1.5"'),
        ("1.", '"1."'),
        (".5", '".5"'),
        ("1e3", '"1e3"'),
        ("09", '"09"'),
        # Step B: timestamps.
        ("2001-12-14t21:59:43.10Z", '"2001-12-14t21:59:43.10Z"'),
        ("2001-12-14 21:59:43.10", '"2001-12-14 21:59:43.10"'),
        ("2001-12-14T21:59:43+05:30", '"2001-12-14T21:59:43+05:30"'),
        ("2024-1-2", '"2024-1-2"'),
        # Step B gate: other first characters always resolve as strings.
        ("abc123", "abc123"),
        ("nulls", "nulls"),
        ("truely", "truely"),
        ("2024-13-01", "2024-13-01"),
        ("1:60", "1:60"),
        # §4.9: comma-grouped YAML 1.1 numbers stay plain (the rc.6+ change is unverified).
        ("1,000", "1,000"),
        ("+12,345", "+12,345"),
        # §4.9 current (rc.6+): YAML 1.1 words, base-60 numbers and "<<" take single quotes.
        *[(word, f"'{word}'") for word in YAML11_WORDS],
        ("yES", "yES"),
        ("1:30", "'1:30'"),
        ("190:20:30", "'190:20:30'"),
        ("-1:30.5", "'-1:30.5'"),
        ("<<", "'<<'"),
        # Step C: plain unless an indicator forbids it.
        ("foo[0]", "foo[0]"),
        ("a#b", "a#b"),
        ("http://x", "http://x"),
        ("?x", "?x"),
        ("a #b", "'a #b'"),
        ("- x", "'- x'"),
        (": x", "': x'"),
        ("? x", "'? x'"),
        ("---x", "'---x'"),
        ("...x", "'...x'"),
        ("x ", "'x '"),
        *[(ch + "x", f"'{ch}x'") for ch in "#,[]{}&*!|>%@`"],
        ('"x', "'\"x'"),
        ("'x", "'''x'"),
        # Step D / §4.6: tabs and non-printable characters force double quotes.
        ("a\tb", '"a\\tb"'),
        ("bell\x07", '"bell\\a"'),
        ("ж", "ж"),
    ],
)
def test_string_styles(value: str, rendered: str) -> None:
    assert text(args(value)) == f"customization:\n    extraKernelArgs:\n        - {rendered}\n"


# --- §4.6 escapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "escape"),
    [
        ("\x00", "\\0"),
        ("\x07", "\\a"),
        ("\x08", "\\b"),
        ("\t", "\\t"),
        ("\x0b", "\\v"),
        ("\x0c", "\\f"),
        ("\r", "\\r"),
        ("\x1b", "\\e"),
        ("\x85", "\\N"),
        ("\u2028", "\\L"),
        ("\u2029", "\\P"),
        ("\x01", "\\x01"),
        ("\x7f", "\\x7F"),
        ("\x9f", "\\x9F"),
        ("\ufeff", "\\uFEFF"),
        ("\ufffe", "\\uFFFE"),
        ("\U0001f600", "\\U0001F600"),
        ("\U0010ffff", "\\U0010FFFF"),
    ],
)
def test_double_quoted_escapes(char: str, escape: str) -> None:
    # The leading tab forces double quotes; quotes and backslashes are then escaped too.
    value = f'\t"\\{char}b'
    assert text(args(value)) == (
        f'customization:\n    extraKernelArgs:\n        - "\\t\\"\\\\{escape}b"\n'
    )


def test_line_separator_alone_keeps_single_quotes() -> None:
    # Spec step D says "a line break forces double quotes"; libyaml (and go-yaml's port) only
    # forbid single quotes for tabs, non-printable characters and spaces next to breaks. U+2028
    # and U+2029 are printable breaks: written raw, the next line indented to the item's column.
    assert text(args("a\u2028b")) == (
        "customization:\n    extraKernelArgs:\n        - 'a\u2028          b'\n"
    )
    assert decode_flavor(text(args("a\u2028b")).encode()) == args("a\u2028b")


def test_no_break_space_is_printable() -> None:
    # §4.6: U+00A0 has an escape (\\_) that is never used, in any style.
    assert text(args("a\xa0b", "\ta\xa0b")) == (
        'customization:\n    extraKernelArgs:\n        - a\xa0b\n        - "\\ta\xa0b"\n'
    )


def test_line_feed_in_a_double_quoted_string_is_escaped() -> None:
    assert text(args("a \nb")) == 'customization:\n    extraKernelArgs:\n        - "a \\nb"\n'


def test_no_line_folding() -> None:
    long_value = " ".join(["word"] * 200)
    assert (
        text(args(long_value)) == f"customization:\n    extraKernelArgs:\n        - {long_value}\n"
    )
    quoted = "x: " + long_value
    assert text(args(quoted)) == f"customization:\n    extraKernelArgs:\n        - '{quoted}'\n"


# --- §4.2 omission -----------------------------------------------------------------------------


def test_zero_values_are_omitted() -> None:
    flavor = Flavor(
        overlay=Overlay(),
        customization=Customization(
            bootloader=Bootloader.NONE,
            secureboot=SecureBoot(include_well_known_certificates=False),
            disk_image=DiskImage(sector_size=0),
        ),
    )
    assert canonical_yaml(flavor) == b"customization: {}\n"


def test_meta_key_zero_and_empty_value_are_written() -> None:
    flavor = Flavor(customization=Customization(meta=(MetaValue(0, ""),)))
    assert text(flavor) == 'customization:\n    meta:\n        - key: 0\n          value: ""\n'


def test_overlay_with_only_options_writes_empty_image_and_name() -> None:
    assert text(options({"a": "b"}, name="")) == (
        'overlay:\n    image: ""\n    name: ""\n    options:\n        a: b\ncustomization: {}\n'
    )


def test_enroll_keys_off_is_single_quoted() -> None:
    flavor = Flavor(customization=Customization(secureboot=SecureBoot(enroll_keys="off")))
    assert text(flavor) == "customization:\n    secureboot:\n        enrollKeys: 'off'\n"


# --- §4.3 layout and §4.8 options --------------------------------------------------------------


def test_options_layout_of_nested_collections() -> None:
    flavor = options(
        {
            "list": (("a", "b"), (), OptionMap.of({"k": "v", "j": "w"}), OptionMap()),
            "deep": OptionMap.of({"x": OptionMap.of({"z": (1,)})}),
        }
    )
    assert text(flavor) == (
        "overlay:\n"
        '    image: ""\n'
        "    name: x\n"
        "    options:\n"
        "        deep:\n"
        "            x:\n"
        "                z:\n"
        "                    - 1\n"
        "        list:\n"
        "            - - a\n"
        "              - b\n"
        "            - []\n"
        "            - j: w\n"
        "              k: v\n"
        "            - {}\n"
        "customization: {}\n"
    )


# The §4.8 example, except for one line: the spec shows the key `y` plain, but its own rules
# (§4.5 applies to options keys; `y` is a YAML 1.1 boolean word; §4.9 current quotes those with
# single quotes) and go-yaml's encoder (keys go through the same stringv) both give `'y'`.
SORTING_EXAMPLE = """\
overlay:
    image: siderolabs/sbc-raspberrypi
    name: rpi_generic
    options:
        Zeta: true
        a_b: null
        aB: []
        configTxtAppend: dtoverlay=vc4-kms-v3d
        item9: 2
        item10: 1
        nested:
            x: 0.5
            'y': 1e+06
customization: {}
"""

SORTING_INPUT = b"""\
overlay:
  image: siderolabs/sbc-raspberrypi
  name: rpi_generic
  options: {configTxtAppend: dtoverlay=vc4-kms-v3d, item10: 1, item9: 2.0, Zeta: true, a_b: null,
    aB: [], nested: {y: 1000000.0, x: 0.5}}
"""


def test_options_sorting_example() -> None:
    assert canonical_yaml(decode_flavor(SORTING_INPUT)).decode() == SORTING_EXAMPLE


def test_options_values_are_retyped() -> None:
    flavor = decode_flavor(
        b"overlay:\n  name: x\n  options:\n    a: yes\n    b: 0x10\n    c: 1.0\n    d: '10'\n"
    )
    assert text(flavor) == (
        "overlay:\n"
        '    image: ""\n'
        "    name: x\n"
        "    options:\n"
        "        a: 'yes'\n"
        "        b: 16\n"
        "        c: 1\n"
        '        d: "10"\n'
        "customization: {}\n"
    )


@pytest.mark.parametrize(
    ("keys", "ordered"),
    [
        (
            ["configTxtAppend", "item10", "item9", "Zeta", "a_b", "aB", "nested"],
            ["Zeta", "a_b", "aB", "configTxtAppend", "item9", "item10", "nested"],
        ),
        (["configTxtAppend", "configTxt"], ["configTxt", "configTxtAppend"]),
        (["a", "Z", "A"], ["A", "Z", "a"]),
        (["1_", "1a"], ["1a", "1_"]),  # after a digit, the letter sorts first
        (["x01", "x1"], ["x1", "x01"]),  # equal values: the shorter digit run first
        (["v1.05", "v1.5"], ["v1.5", "v1.05"]),
        (["1005", "109"], ["109", "1005"]),  # zero special case: 105 vs 19
        (["item2", "item10", "item1"], ["item1", "item2", "item10"]),
    ],
)
def test_natural_key_order(keys: list[str], ordered: list[str]) -> None:
    assert sorted_keys(keys) == ordered


def test_typed_keys_of_nested_maps_follow_go_yaml() -> None:
    # Not covered by the spec (which assumes string keys); from go-yaml's keyList.Less:
    # numbers and booleans compare numerically, then by Go kind (bool < int < float < nil
    # interface < string).
    assert sorted_keys(["b", None, 10, 9.5, True, "a", 0]) == [0, True, 9.5, 10, None, "a", "b"]


# --- §4.4 numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (2.0, "2"),
        (0.5, "0.5"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (123456789.0, "1.23456789e+08"),
        (0.00001, "1e-05"),
        (0.0001, "0.0001"),
        (math.inf, ".inf"),
        (-math.inf, "-.inf"),
        (math.nan, ".nan"),
        (-1.5, "-1.5"),
    ],
)
def test_go_float_formatting(value: float, rendered: str) -> None:
    assert format_float(value) == rendered
    assert text(options({"f": value})).splitlines()[4] == f"        f: {rendered}"


def test_integers_and_null_in_options() -> None:
    flavor = options({"a": -3, "b": 18446744073709551615, "c": None, "d": False})
    assert text(flavor).splitlines()[4:8] == [
        "        a: -3",
        "        b: 18446744073709551615",
        "        c: null",
        "        d: false",
    ]


def test_options_timestamp_is_written_in_rfc3339() -> None:
    flavor = decode_flavor(b"overlay:\n  name: x\n  options:\n    at: 2024-01-02\n")
    assert flavor.overlay.options == OptionMap.of({"at": Timestamp("2024-01-02T00:00:00Z")})
    assert text(flavor).splitlines()[4] == "        at: 2024-01-02T00:00:00Z"


# --- the emitter API ---------------------------------------------------------------------------


def test_emit_mapping_writes_an_extension_manifest() -> None:
    # api.md §12 layout, with the vector-1 schematic as extraInfo.
    schematic = "customization: {}\n"
    manifest = emit_mapping(
        [
            ("version", "v1alpha1"),
            (
                "metadata",
                {
                    "name": "schematic",
                    "version": flavor_id(schematic.encode()),
                    "author": "Image Factory (https://factory.talos.dev/)",
                    "description": "Virtual extension which specifies the schematic of the image "
                    "built with schematic.",
                    "compatibility": {"talos": {"version": ">= 1.0.0"}},
                    "extraInfo": schematic,
                },
            ),
        ]
    )
    assert manifest == (
        "version: v1alpha1\n"
        "metadata:\n"
        "    name: schematic\n"
        "    version: 376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba\n"
        "    author: Image Factory (https://factory.talos.dev/)\n"
        "    description: Virtual extension which specifies the schematic of the image built"
        " with schematic.\n"
        "    compatibility:\n"
        "        talos:\n"
        "            version: '>= 1.0.0'\n"
        "    extraInfo: |\n"
        "        customization: {}\n"
    )


def test_canonical_size_limit() -> None:
    deep: OptionValue = ("x",) * 1000
    for _ in range(50):
        deep = OptionMap.of({"a": deep})
    flavor = options({"a": deep})
    assert len(canonical_yaml(flavor)) > 200_000
    with pytest.raises(InvalidFlavor, match=r"larger than 100000 bytes"):
        canonical_yaml(flavor, max_bytes=100_000)
    # Multi-byte characters count as bytes.
    with pytest.raises(InvalidFlavor, match=r"larger than 40 bytes"):
        canonical_yaml(args("é" * 12), max_bytes=40)
    assert len(text(args("é" * 2))) == 49  # characters; 51 bytes
    with pytest.raises(InvalidFlavor, match=r"larger than 50 bytes"):
        canonical_yaml(args("é" * 2), max_bytes=50)
    assert canonical_yaml(args("é" * 2), max_bytes=51) == canonical_yaml(args("é" * 2))


def test_emit_mapping_of_nothing_is_an_empty_flow_mapping() -> None:
    assert emit_mapping([]) == "{}\n"


@pytest.mark.parametrize("key", ["x" * 129, "a\nb", "a\u2028b"])
def test_emit_mapping_refuses_keys_that_need_the_explicit_form(key: str) -> None:
    with pytest.raises(ValueError, match="too long or spans lines"):
        emit_mapping([(key, 1)])


def test_key_styles_match_value_styles() -> None:
    assert string_style("yes", is_key=True) is Style.SINGLE
    assert string_style("", is_key=True) is Style.DOUBLE
    assert string_style("a b", is_key=True) is Style.PLAIN
