"""Read named files out of an image's layers without unpacking the image.

Layers are tar archives (plain, gzip or zstd) from registries we do not control, so this reads
only the regular-file members asked for, each bounded in size, and never writes anything to
disk. Later layers override earlier ones, as in the flattened image filesystem; an OCI whiteout
(``.wh.<name>``) in a later layer removes a file found earlier.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import zstandard

__all__ = ["LayerFormatError", "copy_layer_files", "read_layer_files"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerFormatError(ValueError):
    """A layer is not a readable tar archive, or a wanted file is too large."""


def _normalize(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[2:] if name.startswith("./") else name[1:]
    return name


@contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    with path.open("rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        stream: IO[bytes] = raw
        if magic == _ZSTD_MAGIC:
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
        try:
            # "r|*" streams: gzip is detected, nothing is held beyond the current member.
            with tarfile.open(fileobj=stream, mode="r|*") as archive:
                yield archive
        except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as exc:
            raise LayerFormatError(
                f"layer {path.name} is not a readable tar archive: {exc}"
            ) from exc


def _walk(
    layers: Iterable[Path], names: set[str], max_file_bytes: int
) -> Iterator[tuple[str, IO[bytes] | None]]:
    """Yield ``(name, content)`` for wanted regular files and ``(name, None)`` for whiteouts."""
    for layer in layers:
        with _open_tar(layer) as archive:
            for member in archive:
                name = _normalize(member.name)
                head, _, base = name.rpartition("/")
                if base.startswith(".wh."):
                    yield (f"{head}/{base[4:]}" if head else base[4:]), None
                    continue
                if name not in names or not member.isfile():
                    continue
                if member.size > max_file_bytes:
                    raise LayerFormatError(
                        f"{name} in layer {layer.name} is {member.size} bytes, "
                        f"more than the limit of {max_file_bytes}"
                    )
                handle = archive.extractfile(member)
                if handle is not None:
                    yield name, handle


def read_layer_files(
    layers: Iterable[Path], wanted: Iterable[str], *, max_file_bytes: int = 16 * 1024 * 1024
) -> dict[str, bytes]:
    """Return ``{name: content}`` for the wanted paths (relative, no leading ``/``) found."""
    found: dict[str, bytes] = {}
    for name, handle in _walk(layers, {_normalize(n) for n in wanted}, max_file_bytes):
        if handle is None:
            found.pop(name, None)
        else:
            found[name] = handle.read()
    return found


def copy_layer_files(
    layers: Iterable[Path], wanted: dict[str, Path], *, max_file_bytes: int = 1 << 34
) -> set[str]:
    """Stream the wanted regular files into the given destination paths; return what was found.

    Later layers override earlier ones; a whiteout removes a file copied from an earlier layer.
    Content is copied in chunks, so files of any size never sit in memory.
    """
    targets = {_normalize(name): dest for name, dest in wanted.items()}
    found: set[str] = set()
    for name, handle in _walk(layers, set(targets), max_file_bytes):
        if handle is None:
            if name in found:
                found.discard(name)
                targets[name].unlink(missing_ok=True)
            continue
        with targets[name].open("wb") as out:
            shutil.copyfileobj(handle, out, 1 << 20)
        found.add(name)
    return found
