"""META values on the kernel command line (talos-assets.md §5.5).

For ISOs and cmdlines the schematic's META values travel as one kernel argument,
``talos.environment=INSTALLER_META_BASE64=<base64>``: the values are rendered as
``0x<key in lowercase hex>=<value>`` joined with ``;`` in schematic order; from Talos 1.6.3 on,
a rendering longer than 256 bytes is gzip-compressed at level 9 first; the result is base64
with the standard alphabet and padding. (Disk images put META into the META partition instead;
that encoding is not here.)

Byte-exactness caveat: the gzip framing is written here to equal Go's (mtime 0, XFL 2 for
level 9, OS 255 — Python's ``gzip.compress`` would write OS 3), but zlib's deflate stream is
not Go's ``compress/flate`` output. A compressed token —
and with it the cmdline, a UKI's ``.cmdline`` section and its PCR signature — is therefore
valid and decodes to the same values, but is not byte-identical to upstream's. Uncompressed
tokens are identical.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Sequence

from image_service.versions import Version
from services.builder.talos.quirks import quirks_for

__all__ = [
    "COMPRESS_THRESHOLD",
    "META_ENV_KEY",
    "META_ENV_VAR",
    "encode_meta",
    "encode_meta_token",
    "render_meta",
]

META_ENV_KEY = "talos.environment"
META_ENV_VAR = "INSTALLER_META_BASE64"
COMPRESS_THRESHOLD = 256  # bytes; longer renderings are gzipped when the target allows it


# Go's gzip.Writer header at BestCompression: magic, deflate, no flags, mtime 0, XFL 2, OS 255.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"


def _gzip(data: bytes) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    return _GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def render_meta(meta: Sequence[tuple[int, str]]) -> bytes:
    """``0xc=hello;0xd=world``: the uncompressed form, keys 0..255 in lowercase hex."""
    parts = []
    for key, value in meta:
        if not 0 <= key <= 0xFF:
            raise ValueError(f"META key {key} is outside 0..255")
        parts.append(f"0x{key:x}={value}")
    return ";".join(parts).encode()


def encode_meta(meta: Sequence[tuple[int, str]], *, allow_gzip: bool) -> str:
    """The base64 value of ``INSTALLER_META_BASE64`` (gzipped if allowed and over 256 bytes)."""
    raw = render_meta(meta)
    if allow_gzip and len(raw) > COMPRESS_THRESHOLD:
        raw = _gzip(raw)
    return base64.b64encode(raw).decode("ascii")


def encode_meta_token(meta: Sequence[tuple[int, str]], version: Version | None) -> str:
    """The kernel argument carrying ``meta`` for target ``version`` (``None``: the newest)."""
    allow_gzip = quirks_for(version).compress_meta
    return f"{META_ENV_KEY}={META_ENV_VAR}={encode_meta(meta, allow_gzip=allow_gzip)}"
