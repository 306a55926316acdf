"""Reading files out of image layers: compression, layering, whiteouts, size limits."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from image_service.imagefs import LayerFormatError, copy_layer_files, read_layer_files


def layer(path: Path, files: dict[str, bytes], compression: str = "gz") -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    data = raw.getvalue()
    if compression == "gz":
        data = gzip.compress(data)
    elif compression == "zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def test_layers_override_and_whiteouts(tmp_path: Path) -> None:
    first = layer(tmp_path / "1", {"./a": b"one", "b/c": b"two", "gone": b"x"}, "gz")
    second = layer(tmp_path / "2", {"a": b"three", ".wh.gone": b""}, "zst")
    third = layer(tmp_path / "3", {"/b/c": b"four"}, "none")
    found = read_layer_files([first, second, third], ["a", "b/c", "gone", "missing"])
    assert found == {"a": b"three", "b/c": b"four"}
    targets = {"a": tmp_path / "out-a", "gone": tmp_path / "out-gone"}
    assert copy_layer_files([first, second], targets) == {"a"}
    assert (tmp_path / "out-a").read_bytes() == b"three"
    assert not (tmp_path / "out-gone").exists()


def test_limits_and_garbage(tmp_path: Path) -> None:
    big = layer(tmp_path / "big", {"file": b"x" * 100}, "none")
    with pytest.raises(LayerFormatError, match="more than the limit"):
        read_layer_files([big], ["file"], max_file_bytes=10)
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(LayerFormatError, match="not a readable tar"):
        read_layer_files([junk], ["file"])
