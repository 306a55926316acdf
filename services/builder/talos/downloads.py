"""The ``Content-Type`` of asset downloads (api.md §6.2), decided by the builder.

:func:`content_type` looks the requested path's extension up in a fixed table instead of the
host's MIME database (upstream's answer for ``.zst``, ``.raw``, ``.vhd`` and ``.ova`` depended
on its container), so every deployment sends the same types. The builder reports it in the asset
descriptor; the frontends only copy it.
"""

from __future__ import annotations

__all__ = ["content_type"]

_OCTET_STREAM = "application/octet-stream"
_TYPES = {
    ".efi": "application/efi",
    ".iso": "application/x-iso9660-image",
    ".xz": "application/x-xz",
    ".gz": "application/gzip",
    ".qcow2": "application/x-qemu-disk",
    ".tar": "application/x-tar",
    ".zst": "application/zstd",
    # Explicit so nobody "fixes" them with a guess: no registered type exists.
    ".raw": _OCTET_STREAM,
    ".vhd": _OCTET_STREAM,
    ".ova": _OCTET_STREAM,
}


def content_type(path: str) -> str:
    """``Content-Type`` for a requested asset path, by its last extension (``.tar.gz`` → gzip)."""
    base = path.rpartition("/")[2]
    dot = base.rfind(".")
    ext = base[dot:] if dot >= 0 else ""  # Go's filepath.Ext: from the last dot
    return _TYPES.get(ext.lower(), _OCTET_STREAM)
