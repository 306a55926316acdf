"""The newc writer checked by GNU cpio (an independent implementation), and the reader checked
against GNU cpio's output. The kernel reading our archives is proven by the initramfs boot tests
(tests/builder/test_initramfs.py)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from services.builder.formats.cpio import (
    CpioError,
    CpioReader,
    CpioWriter,
    iter_members,
    tree_names,
    write_tree,
)

EPOCH = 1559424892


def _tree(root: Path) -> Path:
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/f").write_bytes(b"hi\n")
    (root / "a/empty").write_bytes(b"")
    (root / "a/l").symlink_to("../x")
    (root / "a-c").write_bytes(b"abc")
    (root / "big.bin").write_bytes(os.urandom(3 * (1 << 20) + 5))  # several writer chunks
    (root / "exec").write_bytes(b"#!/bin/sh\n")
    (root / "exec").chmod(0o755)
    (root / ("n" * 200)).write_bytes(b"long name")
    return root


def _gnu(args: list[str], stdin: bytes, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["cpio", *args], input=stdin, capture_output=True, check=True, cwd=cwd
    ).stdout.decode()


def test_tree_names_are_depth_first_and_sorted_per_directory(tmp_path: Path) -> None:
    _tree(tmp_path)
    # Depth first: "a/…" comes before "a-c" although "a-c" < "a/b" bytewise.
    assert tree_names(tmp_path) == [
        "a", "a/b", "a/b/f", "a/empty", "a/l", "a-c", "big.bin", "exec", "n" * 200,
    ]  # fmt: skip
    assert tree_names(tmp_path, "a") == ["a", "a/b", "a/b/f", "a/empty", "a/l"]


def test_gnu_cpio_lists_and_extracts_what_we_write(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    buf = io.BytesIO()
    size = write_tree(buf, src, tree_names(src), mtime=EPOCH)
    data = buf.getvalue()
    assert size == len(data)
    assert size % 4 == 0

    listing = _gnu(["-t", "-v", "--numeric-uid-gid", "--quiet"], data)
    lines = listing.splitlines()
    assert [ln.split()[-1] if " -> " not in ln else ln.split()[-3] for ln in lines] == tree_names(
        src
    )
    for ln in lines:
        assert ln.split()[2:4] == ["0", "0"]  # uid, gid
        assert "2019" in ln  # SOURCE_DATE_EPOCH, 2019-06-01
    assert any(ln.startswith("lrwxrwxrwx") and ln.endswith("a/l -> ../x") for ln in lines)
    assert any(ln.startswith("-rwxr-xr-x") and ln.endswith(" exec") for ln in lines)

    out = tmp_path / "out"
    out.mkdir()
    _gnu(["-i", "-d", "-m", "--quiet", "--no-absolute-filenames"], data, cwd=out)
    for name in tree_names(src):
        a, b = src / name, out / name
        if a.is_symlink():
            assert os.readlink(b) == os.readlink(a)
        elif a.is_file():
            assert b.read_bytes() == a.read_bytes(), name
            assert b.stat().st_mode == a.stat().st_mode
        else:
            assert b.is_dir()
    assert (out / "a/b/f").stat().st_mtime == EPOCH


def test_output_is_reproducible(tmp_path: Path) -> None:
    one, two = io.BytesIO(), io.BytesIO()
    src = _tree(tmp_path / "src")
    write_tree(one, src, tree_names(src), mtime=EPOCH)
    os.utime(src / "a/b/f", (1, 1))  # mtimes on disk never leak into the archive
    write_tree(two, src, tree_names(src), mtime=EPOCH)
    assert one.getvalue() == two.getvalue()


def test_reader_reads_gnu_cpio_archives(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    names = tree_names(src)
    archive = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet", "--reproducible", "-R", "+0:+0"],
        input="".join(f"{n}\n" for n in names).encode(),
        capture_output=True,
        check=True,
        cwd=src,
    ).stdout
    stream = io.BytesIO(archive)
    reader = CpioReader(stream, start=100)
    seen = {}
    for member, data in reader:
        if member.name in ("big.bin", "a/b/f"):
            seen[member.name] = data.read()  # the rest is skipped by the reader
        elif member.is_symlink:
            seen[member.name] = data.read()
    assert seen == {
        "a/b/f": b"hi\n",
        "a/l": b"../x",
        "big.bin": (src / "big.bin").read_bytes(),
    }
    # GNU cpio pads the archive to 512-byte blocks after the trailer.
    assert reader.end is not None
    assert archive[reader.end - 100 :].strip(b"\0") == b""
    assert [m.name for m, _ in iter_members(io.BytesIO(archive))] == names


def test_reader_partial_reads_and_skips(tmp_path: Path) -> None:
    buf = io.BytesIO()
    writer = CpioWriter(buf, mtime=EPOCH)
    writer.add_directory("d")
    writer.add_bytes("d/one", b"12345")
    writer.add_bytes("d/two", b"abcdefgh")
    writer.finish()
    got = []
    for member, data in iter_members(io.BytesIO(buf.getvalue())):
        got.append((member.name, data.read(2)))
    assert got == [("d", b""), ("d/one", b"12"), ("d/two", b"ab")]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"070702" + b[6:], "bad newc magic"),
        (lambda b: b[:150], "truncated"),
        (lambda b: b[:6] + b"zzzzzzzz" + b[14:], "bad newc header"),
    ],
)
def test_reader_rejects_broken_archives(mutate: object, message: str) -> None:
    buf = io.BytesIO()
    writer = CpioWriter(buf, mtime=EPOCH)
    writer.add_bytes("file", b"x" * 100)
    writer.finish()
    broken = mutate(buf.getvalue())  # type: ignore[operator]
    with pytest.raises(CpioError, match=message):
        list(iter_members(io.BytesIO(broken)))


def test_writer_refuses_special_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(CpioError, match="only directories, regular files and symlinks"):
        CpioWriter(io.BytesIO(), mtime=EPOCH).add_path(tmp_path, "fifo")
