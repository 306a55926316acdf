"""Kernel command lines (reference/talos-assets.md §5).

Expected strings are written out from upstream's reference cmdlines (§5.7) and rules
(§5.2-§5.6), and from go-procfs' own test vectors — never produced by the code under test.
"""

from __future__ import annotations

import base64
import gzip

import pytest

from image_service.versions import Version
from services.builder.errors import InvalidPath
from services.builder.talos.cmdline import Cmdline, build_cmdline
from services.builder.talos.meta import encode_meta, encode_meta_token, render_meta
from services.builder.talos.platforms import PLATFORMS, Arch
from services.builder.talos.quirks import quirks_for

AMD, ARM = Arch.AMD64, Arch.ARM64
V177, V1113, V1120B1 = "1.7.7", "1.11.3", "1.12.0-beta.1"


def cmdline(
    version: str,
    platform: str = "metal",
    arch: Arch = AMD,
    *,
    secureboot: bool = False,
    iso: bool = False,
    overlay_args: tuple[str, ...] = (),
    meta: tuple[tuple[int, str], ...] = (),
    extra_args: tuple[str, ...] = (),
    output_is_image: bool = False,
) -> str:
    return build_cmdline(
        platform,
        arch,
        Version.parse(version),
        secureboot=secureboot,
        iso=iso,
        overlay_args=overlay_args,
        meta=meta,
        extra_args=extra_args,
        output_is_image=output_is_image,
    )


# --- §5.7 reference cmdlines ----------------------------------------------------------------

REF_15_METAL = (
    "talos.platform=metal console=ttyS0 console=tty0 init_on_alloc=1 slab_nomerge pti=on "
    "consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng "
    "ima_appraise=fix ima_hash=sha512"
)
REF_15_EQUINIX = (
    "talos.platform=equinixMetal console=ttyS1,115200n8 init_on_alloc=1 slab_nomerge pti=on "
    "consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng "
    "ima_appraise=fix ima_hash=sha512"
)
REF_111_METAL = (
    "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
    "nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1"
)
REF_113_METAL = (
    "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
    "nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 "
    "proc_mem.force_override=never"
)
REF_114_AWS = (
    "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 nvme_core.io_timeout=4294967295 "
    "slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 "
    "proc_mem.force_override=never"
)
REF_110_METAL_ARM64 = (
    "talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on "
    "consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng "
    "ima_appraise=fix ima_hash=sha512 selinux=1"
)
REF_110_AWS = (
    "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 init_on_alloc=1 slab_nomerge "
    "pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on "
    "ima_template=ima-ng ima_appraise=fix ima_hash=sha512 selinux=1"
)
REF_110_NOCLOUD = (
    "talos.platform=nocloud console=tty1 console=ttyS0 net.ifnames=0 init_on_alloc=1 "
    "slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on "
    "ima_template=ima-ng ima_appraise=fix ima_hash=sha512 selinux=1"
)
REF_15_NOCLOUD = (
    "talos.platform=nocloud console=tty1 console=ttyS0 net.ifnames=0 init_on_alloc=1 "
    "slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on "
    "ima_template=ima-ng ima_appraise=fix ima_hash=sha512"
)


@pytest.mark.parametrize(
    ("version", "platform", "arch", "secureboot", "expected"),
    [
        ("1.5.0", "metal", AMD, False, REF_15_METAL),
        ("1.5.0", "metal", AMD, True, REF_15_METAL + " lockdown=confidentiality"),
        ("1.5.0", "equinixMetal", AMD, False, REF_15_EQUINIX),
        ("1.7.0", "metal", AMD, False, REF_15_METAL),
        ("1.11.0", "metal", AMD, False, REF_111_METAL),
        ("1.13.0", "metal", AMD, False, REF_113_METAL),
        ("1.14.0", "aws", AMD, False, REF_114_AWS),
        ("1.10.0", "metal", ARM, False, REF_110_METAL_ARM64),
        ("1.10.0", "aws", AMD, False, REF_110_AWS),
        ("1.10.0", "aws", ARM, False, REF_110_AWS),
        ("1.10.0", "nocloud", AMD, False, REF_110_NOCLOUD),
        ("1.5.0", "nocloud", AMD, False, REF_15_NOCLOUD),
    ],
)
def test_reference_cmdlines(
    version: str, platform: str, arch: Arch, secureboot: bool, expected: str
) -> None:
    assert cmdline(version, platform, arch, secureboot=secureboot) == expected


# --- test-release versions: v1.7.7, v1.11.3, v1.12.0-beta.1 --------------------------------

METAL_177 = REF_15_METAL
METAL_1113 = REF_111_METAL
METAL_1120B1 = REF_111_METAL + " module.sig_enforce=1"
METAL = {V177: METAL_177, V1113: METAL_1113, V1120B1: METAL_1120B1}

METAL_ARM64 = {
    V177: (
        "talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on "
        "consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng "
        "ima_appraise=fix ima_hash=sha512"
    ),
    V1113: (
        "talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on "
        "consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1"
    ),
    V1120B1: (
        "talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on "
        "consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 "
        "module.sig_enforce=1"
    ),
}

CLOUDS = {
    ("aws", V177): (
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 init_on_alloc=1 "
        "slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on "
        "ima_template=ima-ng ima_appraise=fix ima_hash=sha512"
    ),
    ("aws", V1113): (
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 init_on_alloc=1 "
        "slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on "
        "selinux=1"
    ),
    ("aws", V1120B1): (
        "talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 init_on_alloc=1 "
        "slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on "
        "selinux=1 module.sig_enforce=1"
    ),
    ("gcp", V177): (
        "talos.platform=gcp console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1 "
        "sysctl.kernel.kexec_load_disabled=1 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
        "nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix "
        "ima_hash=sha512"
    ),
    ("gcp", V1113): (
        "talos.platform=gcp console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1 "
        "sysctl.kernel.kexec_load_disabled=1 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
        "nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1"
    ),
    ("gcp", V1120B1): (
        "talos.platform=gcp console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1 "
        "sysctl.kernel.kexec_load_disabled=1 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
        "nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1"
    ),
    ("azure", V177): (
        "talos.platform=azure console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 "
        "net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1 "
        "init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
        "printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512"
    ),
    ("azure", V1113): (
        "talos.platform=azure console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 "
        "net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1 "
        "init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
        "printk.devkmsg=on selinux=1"
    ),
    ("azure", V1120B1): (
        "talos.platform=azure console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 "
        "net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1 "
        "init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
        "printk.devkmsg=on selinux=1 module.sig_enforce=1"
    ),
}

VERSIONS = [V177, V1113, V1120B1]


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_flavor(version: str) -> None:
    assert cmdline(version) == METAL[version]
    assert cmdline(version, arch=ARM) == METAL_ARM64[version]
    # A disk image without META has the same cmdline.
    assert cmdline(version, output_is_image=True) == METAL[version]


@pytest.mark.parametrize(("platform", "version"), list(CLOUDS))
def test_cloud_platforms(platform: str, version: str) -> None:
    assert cmdline(version, platform) == CLOUDS[platform, version]
    # These platforms' arguments do not depend on the arch.
    assert cmdline(version, platform, ARM) == CLOUDS[platform, version]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            V177,
            "talos.platform=metal console=ttyS1 slab_nomerge pti=on consoleblank=0 "
            "nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng "
            "ima_appraise=fix ima_hash=sha512 foo=bar",
        ),
        (
            V1113,
            "talos.platform=metal console=ttyS1 slab_nomerge pti=on consoleblank=0 "
            "nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 foo=bar",
        ),
        (
            V1120B1,
            "talos.platform=metal console=ttyS1 slab_nomerge pti=on consoleblank=0 "
            "nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 "
            "foo=bar",
        ),
    ],
)
def test_extra_kernel_args(version: str, expected: str) -> None:
    extra = ("console=ttyS1", "-init_on_alloc", "foo=bar")
    assert cmdline(version, extra_args=extra) == expected
    # Elements are joined and re-split: one element with spaces means the same.
    assert cmdline(version, extra_args=(" ".join(extra),)) == expected


SHORT_META = ((0xC, "hello"), (0xD, "world"))
SHORT_TOKEN = "talos.environment=INSTALLER_META_BASE64=MHhjPWhlbGxvOzB4ZD13b3JsZA=="


@pytest.mark.parametrize("version", VERSIONS)
def test_short_meta(version: str) -> None:
    assert cmdline(version, meta=SHORT_META) == METAL[version] + " " + SHORT_TOKEN
    assert cmdline(version, meta=SHORT_META, iso=True).endswith(" " + SHORT_TOKEN)
    # Disk images carry META in the META partition, not on the cmdline.
    assert cmdline(version, meta=SHORT_META, output_is_image=True) == METAL[version]
    # User arguments come after the META token.
    with_args = cmdline(version, meta=SHORT_META, extra_args=("foo=bar",))
    assert with_args == METAL[version] + " " + SHORT_TOKEN + " foo=bar"


def test_meta_worked_examples() -> None:
    assert encode_meta_token(SHORT_META, Version.parse(V1113)) == SHORT_TOKEN
    assert encode_meta_token(((0xA, "eth0"),), None) == (
        "talos.environment=INSTALLER_META_BASE64=MHhhPWV0aDA="
    )
    assert render_meta(((0x0, "a"), (0xFF, "b"), (0x10, ""))) == b"0x0=a;0xff=b;0x10="


def _meta_payload(line: str) -> bytes:
    prefix = "talos.environment=INSTALLER_META_BASE64="
    (token,) = [t for t in line.split(" ") if t.startswith(prefix)]
    return base64.b64decode(token[len(prefix) :], validate=True)


LONG_VALUE = "x" * 300  # "0xa=" + 300 bytes = 304 > 256


@pytest.mark.parametrize("version", ["1.6.3", *VERSIONS])
def test_long_meta_is_gzipped(version: str) -> None:
    payload = _meta_payload(cmdline(version, meta=((0xA, LONG_VALUE), (0xC, "hello"))))
    assert payload[:2] == b"\x1f\x8b"
    # Same header fields as Go's gzip writer: deflate, no flags, mtime 0, XFL 2 (best), OS 255.
    assert payload[2:10] == b"\x08\x00\x00\x00\x00\x00\x02\xff"
    assert gzip.decompress(payload) == b"0xa=" + LONG_VALUE.encode() + b";0xc=hello"


def test_long_meta_before_1_6_3_is_plain() -> None:
    payload = _meta_payload(cmdline("1.6.2", meta=((0xA, LONG_VALUE),)))
    assert payload == b"0xa=" + LONG_VALUE.encode()


@pytest.mark.parametrize(("length", "gzipped"), [(252, False), (253, True)])
def test_meta_gzip_threshold_is_over_256_bytes(length: int, gzipped: bool) -> None:
    raw = b"0xa=" + b"y" * length  # 256 and 257 bytes
    encoded = base64.b64decode(encode_meta(((0xA, "y" * length),), allow_gzip=True))
    assert (encoded[:2] == b"\x1f\x8b") is gzipped
    assert (gzip.decompress(encoded) if gzipped else encoded) == raw


def test_meta_gzip_threshold_counts_bytes_not_characters() -> None:
    # 4 + 2 * 127 = 258 bytes of UTF-8 in 131 characters.
    encoded = base64.b64decode(encode_meta(((0xA, "é" * 127),), allow_gzip=True))
    assert gzip.decompress(encoded) == b"0xa=" + "é".encode() * 127


def test_meta_key_range() -> None:
    with pytest.raises(ValueError, match="256"):
        render_meta(((256, "x"),))


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (V177, METAL_177 + " lockdown=confidentiality"),
        (V1113, METAL_1113 + " lockdown=confidentiality"),
        (V1120B1, METAL_1120B1 + " lockdown=confidentiality"),
        ("1.14.0", "talos.platform=metal console=tty0 slab_nomerge pti=on consoleblank=0 "
         "printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never"),
    ],
)  # fmt: skip
def test_secureboot(version: str, expected: str) -> None:
    assert cmdline(version, secureboot=True) == expected


def test_secureboot_with_meta_and_args() -> None:
    got = cmdline(V1113, secureboot=True, meta=SHORT_META, extra_args=("-lockdown",))
    assert got == METAL_1113 + " " + SHORT_TOKEN


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (V177, METAL_177),
        (
            V1113,
            "talos.platform=metal console=tty0 talos.halt_if_installed=1 init_on_alloc=1 "
            "slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
            "printk.devkmsg=on selinux=1",
        ),
        (
            V1120B1,
            "talos.platform=metal console=tty0 talos.halt_if_installed=1 init_on_alloc=1 "
            "slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
            "printk.devkmsg=on selinux=1 module.sig_enforce=1",
        ),
    ],
)
def test_iso_halts_if_installed_from_1_8(version: str, expected: str) -> None:
    assert cmdline(version, iso=True) == expected


RPI_ARGS = (
    "console=tty0",
    "console=ttyAMA0,115200",
    "sysctl.kernel.kexec_load_disabled=1",
    "talos.dashboard.disabled=1",
)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            V177,
            "talos.platform=metal console=tty0 console=ttyAMA0,115200 "
            "sysctl.kernel.kexec_load_disabled=1 talos.dashboard.disabled=1 init_on_alloc=1 "
            "slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
            "printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512",
        ),
        (
            V1113,
            "talos.platform=metal console=tty0 console=ttyAMA0,115200 "
            "sysctl.kernel.kexec_load_disabled=1 talos.dashboard.disabled=1 init_on_alloc=1 "
            "slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
            "printk.devkmsg=on selinux=1",
        ),
    ],
)
def test_overlay_args_replace_platform_consoles(version: str, expected: str) -> None:
    assert cmdline(version, arch=ARM, overlay_args=RPI_ARGS) == expected


# --- §5.6 merging rules -------------------------------------------------------------------

TAIL = (
    "init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
    "printk.devkmsg=on selinux=1"
)


@pytest.mark.parametrize(
    ("version", "extra", "expected"),
    [
        # Different keys: delete first, then append at the end (release-notes recipe).
        (V1120B1, ("-module.sig_enforce", "module.sig_enforce=0"),
         f"talos.platform=metal console=tty0 {TAIL} module.sig_enforce=0"),
        ("1.13.0", ("-module.sig_enforce", "module.sig_enforce=0"),
         f"talos.platform=metal console=tty0 {TAIL} proc_mem.force_override=never "
         "module.sig_enforce=0"),
        # Reverse order: the value is appended first, then the whole key goes.
        (V1120B1, ("module.sig_enforce=0", "-module.sig_enforce"),
         f"talos.platform=metal console=tty0 {TAIL}"),
        ("1.13.0", ("module.sig_enforce=0", "-module.sig_enforce"),
         f"talos.platform=metal console=tty0 {TAIL} proc_mem.force_override=never"),
        # Console replacement (§5.6 example): all user consoles at the first console's place.
        (V1113, ("console=ttyS1,115200n8", "console=tty0"),
         f"talos.platform=metal console=ttyS1,115200n8 console=tty0 {TAIL}"),
        (V177, ("console=ttyS1,115200n8",),
         "talos.platform=metal console=ttyS1,115200n8 init_on_alloc=1 slab_nomerge pti=on "
         "consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on "
         "ima_template=ima-ng ima_appraise=fix ima_hash=sha512"),
        # talos.platform is replaced in place.
        (V1113, ("talos.platform=nocloud",), f"talos.platform=nocloud console=tty0 {TAIL}"),
        # -key=value removes one value; -key the key.
        (V177, ("-console=ttyS0",),
         "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
         "nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng "
         "ima_appraise=fix ima_hash=sha512"),
        (V1113, ("-console",), f"talos.platform=metal {TAIL}"),
        # A deleted key comes back at the end.
        (V1113, ("-console", "console=ttyS1"), f"talos.platform=metal {TAIL} console=ttyS1"),
        # Values of one key are grouped: foo=1 foo=2 first, then bar.
        (V1113, ("foo=1", "bar", "foo=2"),
         f"talos.platform=metal console=tty0 {TAIL} foo=1 foo=2 bar"),
        # Repeating a default adds it again, adjacent to the first.
        (V1113, ("slab_nomerge",),
         "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge slab_nomerge pti=on "
         "consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1"),
        # Negating what is not there changes nothing; values may contain '='.
        (V1113, ("-nothing", "-nothing=here", "talos.config=http://x/?a=b"),
         f"talos.platform=metal console=tty0 {TAIL} talos.config=http://x/?a=b"),
        (V1113, ("-init_on_alloc=2",), f"talos.platform=metal console=tty0 {TAIL}"),
        (V1113, ("-selinux", "selinux=0", "enforcing=0"),
         "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
         "nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=0 enforcing=0"),
    ],
)  # fmt: skip
def test_merge_rules(version: str, extra: tuple[str, ...], expected: str) -> None:
    assert cmdline(version, extra_args=extra) == expected


def test_azure_console_override() -> None:
    assert cmdline(V1113, "azure", extra_args=("console=tty0",)) == (
        "talos.platform=azure console=tty0 earlyprintk=ttyS0,115200 rootdelay=300 "
        "net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1 "
        f"{TAIL}"
    )


def test_unknown_platform() -> None:
    with pytest.raises(InvalidPath, match='invalid platform: "foo"'):
        cmdline(V1113, "foo")


# --- platform kernel arguments (§5.3) -----------------------------------------------------

PLATFORM_ARGS = {
    ("metal", AMD): "console=tty0",
    ("metal", ARM): "console=ttyAMA0 console=tty0",
    ("aws", AMD): "console=tty1 console=ttyS0 net.ifnames=0",
    ("azure", AMD): (
        "console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 net.ifnames=0 "
        "talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1"
    ),
    ("gcp", ARM): (
        "console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1"
    ),
    ("nocloud", AMD): "console=tty1 console=ttyS0 net.ifnames=0",
    ("openstack", ARM): "console=tty1 console=ttyS0 net.ifnames=0",
    ("hcloud", AMD): "console=tty1 console=ttyS0 net.ifnames=0",
    ("exoscale", AMD): "console=tty1 console=ttyS0 net.ifnames=0",
    ("cloudstack", ARM): "console=tty1 console=ttyS0 net.ifnames=0",
    ("opennebula", AMD): "console=tty1 console=ttyS0 net.ifnames=0",
    ("alibabacloud", AMD): "console=tty1 console=ttyS0 net.ifnames=0",
    ("oracle", ARM): "console=tty1 console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1",
    ("scaleway", AMD): "console=tty1 console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1",
    ("akamai", AMD): "console=ttyS0 console=tty0 console=tty1 net.ifnames=0",
    ("digital-ocean", AMD): "console=ttyS0 console=tty0 console=tty1 net.ifnames=0",
    ("upcloud", AMD): "net.ifnames=0",
    ("vultr", AMD): "net.ifnames=0",
    ("vmware", AMD): (
        "talos.config=guestinfo console=tty0 console=ttyS0 earlyprintk=ttyS0,115200 net.ifnames=0"
    ),
    ("vmware", ARM): "talos.config=guestinfo console=tty0 console=ttyAMA0 net.ifnames=0",
    ("equinixMetal", AMD): "console=ttyS1,115200n8",
    ("equinixMetal", ARM): "console=ttyAMA0,115200",
}


@pytest.mark.parametrize(("platform", "arch"), list(PLATFORM_ARGS))
def test_platform_kernel_args(platform: str, arch: Arch) -> None:
    quirks = quirks_for(Version.parse(V1113))
    assert (
        " ".join(PLATFORMS[platform].kernel_args_for(arch, quirks)) == PLATFORM_ARGS[platform, arch]
    )


def test_version_dependent_platform_args() -> None:
    metal, aws = PLATFORMS["metal"], PLATFORMS["aws"]
    assert metal.kernel_args_for(AMD, quirks_for(Version.parse("1.7.7"))) == (
        "console=ttyS0",
        "console=tty0",
    )
    assert metal.kernel_args_for(ARM, quirks_for(Version.parse("1.7.7"))) == (
        "console=ttyAMA0",
        "console=tty0",
    )
    assert aws.kernel_args_for(AMD, quirks_for(Version.parse("1.14.0")))[-1] == (
        "nvme_core.io_timeout=4294967295"
    )


# --- the go-procfs model, with go-procfs' own test vectors --------------------------------


C3 = "console=tty0 console=ttyS0 root=/dev/sdb"
C3_9600 = "console=tty0 console=ttyS0,9600 root=/dev/sdb"


@pytest.mark.parametrize(
    ("initial", "args", "overwrite", "delete_negated", "expected"),
    [
        ("ip=dhcp console=x root=/dev/sdc", ["root=/dev/sda", "root=/dev/sdb"], (), False,
         "ip=dhcp console=x root=/dev/sdc root=/dev/sda root=/dev/sdb"),
        ("root=/dev/sdb", ["this=that=those"], (), False, "root=/dev/sdb this=that=those"),
        (C3, ["console=tty0", "console=ttyS1,115200", "nogui"], (), False,
         "console=tty0 console=ttyS0 console=tty0 console=ttyS1,115200 root=/dev/sdb nogui"),
        (C3, ["console=tty0", "console=ttyS1,115200", "nogui"], ("console",), False,
         "console=tty0 console=ttyS1,115200 root=/dev/sdb nogui"),
        (C3, ["-console", "nogui"], ("console",), True, "root=/dev/sdb nogui"),
        (C3_9600, ["-console", "nogui"], (), True, "root=/dev/sdb nogui"),
        (C3_9600, ["-console=ttyS0,9600", "nogui"], (), True, "console=tty0 root=/dev/sdb nogui"),
        (C3, ["-console=tty0", "nogui"], ("console",), True, "console=ttyS0 root=/dev/sdb nogui"),
        (C3, ["-console", "nogui", "console=ttyAMA0"], ("console",), True,
         "root=/dev/sdb nogui console=ttyAMA0"),
        (C3, ["-console=tty0", "nogui", "console=ttyAMA0"], (), True,
         "console=ttyS0 console=ttyAMA0 root=/dev/sdb nogui"),
        (C3, ["-console=tty0", "nogui", "console=ttyAMA0"], ("console",), True,
         "console=ttyAMA0 root=/dev/sdb nogui"),
        # Without delete_negated a negation is just another key.
        ("console=tty0", ["-console"], (), False, "console=tty0 -console"),
    ],
)  # fmt: skip
def test_append_all_vectors(
    initial: str,
    args: list[str],
    overwrite: tuple[str, ...],
    delete_negated: bool,
    expected: str,
) -> None:
    line = Cmdline(initial)
    line.append_all(args, overwrite=overwrite, delete_negated=delete_negated)
    assert str(line) == expected
    assert len(line.keys()) == len(set(line.keys()))


@pytest.mark.parametrize(
    ("initial", "args", "expected"),
    [
        ("", ["root=/dev/sda", "root=/dev/sdb"], "root=/dev/sda root=/dev/sdb"),
        ("root=/dev/sdb root=/dev/sdc aye=sir", ["root=/dev/mmcblk0"], "root=/dev/mmcblk0 aye=sir"),
    ],
)
def test_set_all_vectors(initial: str, args: list[str], expected: str) -> None:
    line = Cmdline(initial)
    line.set_all(args)
    assert str(line) == expected


def test_parse_and_render() -> None:
    line = Cmdline(" root=/dev/abc=1  nogui  \n")
    assert line.get("root") == ("/dev/abc=1",)
    assert line.get("nogui") == ("",)
    assert line.get("missing") is None
    assert str(line) == "root=/dev/abc=1 nogui"
    grouped = Cmdline("boot=xyz console=tty0 nogui console=ttyS0,9600")
    assert str(grouped) == "boot=xyz console=tty0 console=ttyS0,9600 nogui"
    line.set("nogui", [""])
    line.set("initrd", ["/ROOT-A/initramfs.xz"])
    assert str(line) == "root=/dev/abc=1 nogui initrd=/ROOT-A/initramfs.xz"


def test_delete_values_keeps_the_key_in_place() -> None:
    line = Cmdline("console=tty0 console=ttyS0,9600 root=/dev/sda panic=0 console=ttyS0,115000")
    line.delete("console", ["ttyS0,9600"])
    assert str(line) == "console=tty0 console=ttyS0,115000 root=/dev/sda panic=0"
    line.delete("console", ["ttyS0,96000"])
    assert str(line) == "console=tty0 console=ttyS0,115000 root=/dev/sda panic=0"
    line.delete("console", ["tty0", "ttyS0,115000"])
    assert str(line) == "root=/dev/sda panic=0"
    line.append("console", "ttyS1")
    assert str(line) == "console=ttyS1 root=/dev/sda panic=0"
