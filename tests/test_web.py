"""Download headers: Content-Type (reference/api.md §6.2) and Content-Disposition (§6.1, §15.18)."""

from __future__ import annotations

import pytest

from frontends.common.web import MAX_FILENAME_CHARS, content_disposition
from services.builder.talos.downloads import content_type


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metal-amd64.iso", "application/x-iso9660-image"),
        ("metal-amd64-secureboot-uki.efi", "application/efi"),
        ("initramfs-amd64.xz", "application/x-xz"),
        ("metal-arm64.raw.xz", "application/x-xz"),
        ("digital-ocean-amd64.raw.gz", "application/gzip"),
        ("gcp-amd64.raw.tar.gz", "application/gzip"),
        ("openstack-arm64.qcow2", "application/x-qemu-disk"),
        ("installer-amd64.tar", "application/x-tar"),
        ("metal-installer-amd64.tar", "application/x-tar"),
        ("metal-amd64.raw.zst", "application/zstd"),
        ("metal-amd64.raw", "application/octet-stream"),
        ("azure-amd64.vhd", "application/octet-stream"),
        ("vmware-amd64.ova", "application/octet-stream"),
        ("kernel-amd64", "application/octet-stream"),
        ("cmdline-metal-amd64", "application/octet-stream"),
        ("something.unknown", "application/octet-stream"),
        ("METAL-AMD64.ISO", "application/x-iso9660-image"),
        ("dir.iso/kernel-amd64", "application/octet-stream"),
        ("", "application/octet-stream"),
    ],
)
def test_content_type(path: str, expected: str) -> None:
    assert content_type(path) == expected


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        # Upstream's exact header for ordinary names (api.md §6.3).
        ("metal-amd64.iso", 'attachment; filename="metal-amd64.iso"'),
        ("vmlinuz", 'attachment; filename="vmlinuz"'),
        ("my talos (1).iso", 'attachment; filename="my talos (1).iso"'),
        # Characters a quoted-string or a browser would misread get the RFC 6266 form too.
        ('a"b.iso', "attachment; filename=\"a_b.iso\"; filename*=UTF-8''a%22b.iso"),
        ("a\\b.iso", "attachment; filename=\"a_b.iso\"; filename*=UTF-8''a%5Cb.iso"),
        ("../etc/passwd",
         "attachment; filename=\".._etc_passwd\"; filename*=UTF-8''..%2Fetc%2Fpasswd"),
        ("100%.iso", "attachment; filename=\"100_.iso\"; filename*=UTF-8''100%25.iso"),
        ("tälos.iso", "attachment; filename=\"t_los.iso\"; filename*=UTF-8''t%C3%A4los.iso"),
        ("日本.iso", "attachment; filename=\"__.iso\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.iso"),
        # Control characters (header injection) are dropped outright.
        ("a\r\nSet-Cookie: x=y", 'attachment; filename="aSet-Cookie: x=y"'),
        ("\x00\x1f\u202e", 'attachment; filename="download"'),
        ("", 'attachment; filename="download"'),
    ],
)  # fmt: skip
def test_content_disposition(filename: str, expected: str) -> None:
    assert content_disposition(filename) == expected


def test_content_disposition_is_always_a_safe_header_value() -> None:
    nasty = "".join(chr(c) for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF)
    header = content_disposition(nasty)
    assert header.isascii()
    assert all(" " <= c <= "~" for c in header)


def test_content_disposition_caps_the_name() -> None:
    header = content_disposition("x" * 1000 + ".iso")
    assert header == f'attachment; filename="{"x" * MAX_FILENAME_CHARS}"'
