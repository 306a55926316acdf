"""Defensive extraction of extension layers: hostile tars crafted with ``tarfile`` are refused
with a message naming the image and the entry, and nothing is ever written outside the
extraction directory (a canary directory next to it must stay untouched)."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard

from image_service.errors import InvalidInput
from image_service.versions import Version
from services.builder.errors import BuildError
from services.builder.inputs.extract import (
    ExtensionManifest,
    ExtractLimits,
    InvalidExtension,
    VersionRange,
    extract_layers,
    load_extension,
)

IMAGE = "siderolabs/evil"
MANIFEST = b"""\
version: v1alpha1
metadata:
  name: gvisor
  version: "20250505.0"
  author: Sidero Labs
  description: |
    [container runtime] gVisor.
  compatibility:
    talos:
      version: ">= v1.10.0"
"""


# --- crafting tars -------------------------------------------------------------------------------


@dataclass
class E:
    """One tar entry to craft."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    link: str = ""
    pax: dict[str, str] = field(default_factory=dict)


def f(name: str, data: bytes = b"x", mode: int = 0o644, pax: dict[str, str] | None = None) -> E:
    return E(name, tarfile.REGTYPE, data, mode, pax=dict(pax or {}))


def d(name: str, mode: int = 0o755) -> E:
    return E(name, tarfile.DIRTYPE, mode=mode)


def sym(name: str, target: str) -> E:
    return E(name, tarfile.SYMTYPE, link=target, mode=0o777)


def hard(name: str, target: str) -> E:
    return E(name, tarfile.LNKTYPE, link=target)


def tar_bytes(entries: Sequence[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.kind
            info.mode = e.mode
            info.linkname = e.link
            info.pax_headers = dict(e.pax)
            if e.kind == tarfile.REGTYPE:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def valid(*extra: E) -> list[E]:
    return [f("manifest.yaml", MANIFEST), d("rootfs"), *extra]


@dataclass
class Env:
    tmp: Path
    dest: Path
    canary: Path
    counter: int = 0

    def layer(
        self, entries: Sequence[E], compress: str = "", fmt: int = tarfile.PAX_FORMAT
    ) -> Path:
        data = tar_bytes(entries, fmt)
        if compress == "gzip":
            data = gzip.compress(data)
        elif compress == "zstd":
            data = zstandard.ZstdCompressor().compress(data)
        self.counter += 1
        path = self.tmp / "layers" / f"layer{self.counter}.tar"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return path

    def extract(self, *layers: Sequence[E], limits: ExtractLimits | None = None) -> Path:
        extract_layers([self.layer(x) for x in layers], self.dest, image=IMAGE, limits=limits)
        return self.dest

    def snapshot(self) -> list[tuple[str, int, bytes]]:
        out = []
        for path in sorted(self.tmp.rglob("*")):
            if self.dest in path.parents or path == self.dest or "layers" in path.parts:
                continue
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            out.append((str(path.relative_to(self.tmp)), path.lstat().st_mode, data))
        return out


@pytest.fixture
def env(tmp_path: Path) -> Env:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "file").write_text("precious\n")
    (tmp_path / "work").mkdir()  # dest's parent: "../x" would land here
    return Env(tmp_path, tmp_path / "work" / "ext", canary)


# --- hostile layers ------------------------------------------------------------------------------

Case = Callable[[Path], list[list[E]]]
HOSTILE: list[tuple[str, Case, str]] = [
    ("dotdot", lambda c: [[f("../etc/passwd")]], 'layer entry "../etc/passwd" escapes'),
    ("dotdot deep", lambda c: [[f("rootfs/../../evil")]], '"rootfs/../../evil" escapes'),
    ("absolute", lambda c: [[f(f"{c}/evil")]], "is an absolute path"),
    (
        "symlink escapes",
        lambda c: [[sym("rootfs/link", "../../canary")]],
        'layer entry "rootfs/link": symlink target "../../canary" escapes the extension root',
    ),
    (
        "absolute symlink outside rootfs",
        lambda c: [[sym("manifest.yaml", "/etc/passwd")]],
        'symlink target "/etc/passwd" escapes',
    ),
    (
        "write through absolute symlink",
        lambda c: [[d("rootfs"), sym("rootfs/link", str(c)), f("rootfs/link/evil")]],
        'layer entry "rootfs/link/evil": "rootfs/link" is not a directory',
    ),
    (
        "write through a symlink chain that resolves lexically inside",
        lambda c: [
            [
                sym("rootfs/x", "."),
                sym("rootfs/s", "x"),
                sym("rootfs/t", "s/../.."),
                f("rootfs/t/canary/evil"),
            ]
        ],
        '"rootfs/t" is not a directory',
    ),
    (
        "write through symlink from an earlier layer",
        lambda c: [[sym("rootfs/usr", str(c))], [f("rootfs/usr/lib/evil")]],
        'layer 2 of 2: layer entry "rootfs/usr/lib/evil": "rootfs/usr" is not a directory',
    ),
    (
        "directory replaced by a symlink, then written through",
        lambda c: [[d("rootfs/dir"), sym("rootfs/dir", str(c)), f("rootfs/dir/file", b"x")]],
        '"rootfs/dir" is not a directory',
    ),
    (
        "hard link escapes",
        lambda c: [[hard("rootfs/h", "../../etc/passwd")]],
        'link "../../etc/passwd" escapes',
    ),
    ("hard link absolute", lambda c: [[hard("rootfs/h", "/etc/passwd")]], "is an absolute path"),
    (
        "hard link to a symlink",
        lambda c: [[sym("rootfs/l", f"{c}/file"), hard("rootfs/h", "rootfs/l")]],
        'hard link target "rootfs/l" is not a file extracted before it',
    ),
    (
        "hard link through a symlinked directory",
        lambda c: [[sym("rootfs/dir", str(c)), hard("rootfs/h", "rootfs/dir/file")]],
        "is not a file extracted before it",
    ),
    (
        "character device",
        lambda c: [[E("rootfs/null", tarfile.CHRTYPE)]],
        'layer entry "rootfs/null" is a character device, which is not allowed',
    ),
    ("block device", lambda c: [[E("rootfs/sda", tarfile.BLKTYPE)]], "is a block device"),
    ("fifo", lambda c: [[E("rootfs/pipe", tarfile.FIFOTYPE)]], '"rootfs/pipe" is a FIFO'),
]


@pytest.mark.parametrize(
    ("case", "expected"), [(c, m) for _, c, m in HOSTILE], ids=[n for n, _, _ in HOSTILE]
)
def test_hostile_layers_are_refused(env: Env, case: Case, expected: str) -> None:
    before = env.snapshot()
    with pytest.raises(InvalidExtension) as info:
        env.extract(*case(env.canary))
    assert str(info.value).startswith(f"extension {IMAGE}: ")
    assert expected in str(info.value)
    assert isinstance(info.value, InvalidInput)
    assert isinstance(info.value, BuildError)
    assert env.snapshot() == before  # nothing outside the extraction directory changed
    assert (env.canary / "file").read_text() == "precious\n"
    assert sorted(p.name for p in env.canary.iterdir()) == ["file"]


@pytest.mark.parametrize(
    ("limits", "entries", "expected"),
    [
        (
            ExtractLimits(max_entry_bytes=1000),
            [f("rootfs/big", b"x" * 2000)],
            'layer entry "rootfs/big" is 2000 bytes, more than the limit of 1000',
        ),
        (
            ExtractLimits(max_total_bytes=1500),
            [f("rootfs/a", b"x" * 1000), f("rootfs/b", b"x" * 1000)],
            "layer contents exceed the limit of 1500 bytes",
        ),
        (ExtractLimits(max_entries=5), [f(f"rootfs/{i}") for i in range(6)], "more than 5"),
        (
            ExtractLimits(max_header_bytes=1024),
            [f("rootfs/" + "n" * 2000)],
            "tar extension header",
        ),
    ],
    ids=["entry", "total", "count", "pax-header"],
)
def test_limits(env: Env, limits: ExtractLimits, entries: list[E], expected: str) -> None:
    with pytest.raises(InvalidExtension, match=expected):
        env.extract(entries, limits=limits)
    # The oversized entry was refused before a byte of it was written.
    assert not (env.dest / "rootfs/big").exists()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"not a tar archive at all" * 40, "not a tar archive"),
        (gzip.compress(tar_bytes(valid()))[:-8] + b"garbage!", "not a readable tar archive"),
        (
            zstandard.ZstdCompressor().compress(tar_bytes(valid(f("rootfs/r", os.urandom(4096)))))[
                :-600
            ],
            "truncated|not a readable",
        ),
        (tar_bytes(valid(f("rootfs/file", b"z" * 5000)))[:2000], "truncated"),
        (tar_bytes(valid())[:1536], "no end-of-archive marker"),
        (tar_bytes([f("rootfs/x", pax={"size": "-5"})]), "malformed tar header"),
    ],
    ids=["garbage", "bad-gzip", "bad-zstd", "truncated", "no-end-marker", "negative-size"],
)
def test_corrupt_layers(env: Env, data: bytes, expected: str) -> None:
    path = env.tmp / "corrupt.tar"
    path.write_bytes(data)
    with pytest.raises(InvalidExtension, match=expected):
        extract_layers([path], env.dest, image=IMAGE)


# --- what is accepted ----------------------------------------------------------------------------


@pytest.mark.parametrize("compress", ["", "gzip", "zstd"])
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_formats_and_long_names(env: Env, compress: str, fmt: int) -> None:
    deep = "rootfs/usr/local/" + "/".join(["directory-with-a-long-name"] * 6) + "/file"
    entries = valid(f("rootfs/usr/local/bin/tool", b"#!/bin/sh\n", 0o755), f(deep, b"deep"))
    extract_layers([env.layer(entries, compress, fmt)], env.dest, image=IMAGE)
    assert (env.dest / deep).read_bytes() == b"deep"
    tool = env.dest / "rootfs/usr/local/bin/tool"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755
    assert (env.dest / "manifest.yaml").read_bytes() == MANIFEST


def test_links_modes_and_labels(env: Env) -> None:
    label = "system_u:object_r:system_state_t:s0"
    tree = env.extract(
        valid(
            d("rootfs/usr", 0o555),
            f("rootfs/usr/a", b"data", 0o400, pax={"SCHILY.xattr.security.selinux": label}),
            hard("rootfs/usr/b", "rootfs/usr/a"),
            sym("rootfs/usr/rel", "a"),
            sym("rootfs/usr/abs", "/usr/a"),  # absolute: the Talos root at runtime
            sym("rootfs/up", "../manifest.yaml"),  # leaves rootfs/, stays in the layer
        )
    )
    usr = tree / "rootfs/usr"
    assert (usr / "a").stat().st_ino == (usr / "b").stat().st_ino
    assert os.readlink(usr / "rel") == "a"
    assert os.readlink(usr / "abs") == "/usr/a"
    assert stat.S_IMODE((usr / "a").stat().st_mode) == 0o400
    assert stat.S_IMODE(usr.stat().st_mode) == 0o755  # owner keeps rwx for later steps
    result = extract_layers(
        [env.layer(valid(f("rootfs/x", pax={"SCHILY.xattr.security.selinux": label + "\0"})))],
        env.tmp / "second",
        image=IMAGE,
    )
    assert result.selinux_labels == {"rootfs/x": label}
    assert result.entries == 3


def test_whiteouts_and_replacements(env: Env) -> None:
    tree = env.extract(
        valid(
            f("rootfs/keep"),
            f("rootfs/gone"),
            d("rootfs/opaque"),
            f("rootfs/opaque/old1"),
            d("rootfs/opaque/sub"),
            f("rootfs/opaque/sub/old2"),
            d("rootfs/was-dir"),
            f("rootfs/was-dir/x"),
            f("rootfs/was-file"),
            sym("rootfs/link", str(env.canary)),
        ),
        [
            f("rootfs/.wh.gone"),
            f("rootfs/opaque/new"),
            f("rootfs/opaque/.wh..wh..opq"),
            f("rootfs/was-dir", b"now a file"),
            d("rootfs/was-file"),
            f("rootfs/.wh.link"),  # removes the link, never what it points to
            f("rootfs/link/.wh.file"),  # parent is (was) a symlink: ignored
        ],
    )
    rootfs = tree / "rootfs"
    assert sorted(p.name for p in rootfs.iterdir()) == ["keep", "opaque", "was-dir", "was-file"]
    assert sorted(p.name for p in (rootfs / "opaque").iterdir()) == ["new"]
    assert (rootfs / "was-dir").read_bytes() == b"now a file"
    assert (rootfs / "was-file").is_dir()
    assert (env.canary / "file").read_text() == "precious\n"


def test_destination_must_be_empty(env: Env) -> None:
    env.dest.mkdir(parents=True)
    (env.dest / "x").touch()
    with pytest.raises(ValueError, match="not empty"):
        env.extract(valid())


# --- structure and manifest ----------------------------------------------------------------------


def _manifest(text: str) -> list[E]:
    return [f("manifest.yaml", text.encode()), d("rootfs")]


def test_load_extension_reads_the_manifest(env: Env) -> None:
    tree = env.extract(valid(f("rootfs/usr/local/bin/runsc")))
    manifest = load_extension(tree, image=IMAGE, talos_version=Version.parse("1.11.3"))
    assert manifest == ExtensionManifest(
        name="gvisor",
        version="20250505.0",
        author="Sidero Labs",
        description="[container runtime] gVisor.\n",
        compatibility=">= v1.10.0",
    )


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (valid(f("etc/passwd")), 'unexpected file "etc"'),
        (valid(f("README")), 'unexpected file "README"'),
        ([d("rootfs")], "extension manifest is missing"),
        ([f("manifest.yaml", MANIFEST)], "extension rootfs is missing"),
        ([f("manifest.yaml", MANIFEST), f("rootfs")], "extension rootfs is missing"),
        ([d("rootfs"), f("rootfs/m", MANIFEST), sym("manifest.yaml", "rootfs/m")], "not a regular"),
        (_manifest("version: v1alpha2\nmetadata: {name: a, version: b}\n"), 'version: "v1alpha2"'),
        (_manifest("version: v1alpha1\nmetadata: [1, 2]\n"), "metadata must be a mapping"),
        (_manifest("version: v1alpha1\nmetadata:\n  version: '1'\n"), "metadata.name is missing"),
        (_manifest("version: v1alpha1\nmetadata: {name: a}\n"), "metadata.version is missing"),
        (_manifest("version: v1alpha1\n  bad: [\n"), "not valid YAML"),
        (_manifest("version: v1alpha1\nversion: v1alpha1\n"), "defined twice"),
        (
            _manifest(
                "version: v1alpha1\nmetadata:\n  name: a\n  version: b\n"
                "  compatibility: {talos: {version: '>= v1.12.0'}}\n"
            ),
            'version constraint ">= v1.12.0" can\'t be satisfied with Talos version v1.11.3',
        ),
        (
            _manifest(
                "version: v1alpha1\nmetadata:\n  name: a\n  version: b\n"
                "  compatibility: {talos: {version: '>= banana'}}\n"
            ),
            "error parsing Talos version constraint",
        ),
    ],
)
def test_load_extension_refuses(env: Env, entries: list[E], expected: str) -> None:
    tree = env.extract(entries)
    with pytest.raises(InvalidExtension) as info:
        load_extension(tree, image=IMAGE, talos_version=Version.parse("1.11.3"))
    assert str(info.value).startswith(f"extension {IMAGE}: ")
    assert expected in str(info.value)


def test_manifest_scalars_are_kept_as_written(env: Env) -> None:
    # Talos decodes into string fields: "1.10" stays "1.10", null becomes "".
    text = "version: v1alpha1\nmetadata:\n  name: a\n  version: 1.10\n  author: ~\n"
    tree = env.extract(_manifest(text))
    manifest = load_extension(tree, image=IMAGE, talos_version=None)
    assert (manifest.version, manifest.author, manifest.compatibility) == ("1.10", "", "")


def test_oversized_manifest(env: Env) -> None:
    tree = env.extract(valid())
    with pytest.raises(InvalidExtension, match=r"manifest\.yaml is larger than 10 bytes"):
        load_extension(
            tree, image=IMAGE, talos_version=None, limits=ExtractLimits(max_manifest_bytes=10)
        )


@pytest.mark.parametrize(
    ("constraint", "version", "ok"),
    [
        (">= v1.5.0", "1.5.0", True),
        (">= v1.5.0", "1.4.9", False),
        (">=v1.5.0", "2.0.0", True),
        (">= 1.0.0", "1.7.7", True),
        (">= v1.12.0", "1.12.0", True),  # the target's prerelease never counts (core only)
        (">1.0.0 <2.0.0", "1.9.9", True),
        (">1.0.0 <2.0.0", "2.0.0", False),
        (">=1.5.0, <2.0.0", "1.11.3", True),
        ("< v1.8.0 || >= v1.10.0", "1.9.0", False),
        ("< v1.8.0 || >= v1.10.0", "1.10.1", True),
        ("1.7.7", "1.7.7", True),
        ("=1.7.7", "1.7.8", False),
        ("!=1.7.7", "1.7.8", True),
        ("<= v1.7", "1.7.0", True),
        (">= v1.12.0-alpha.0", "1.12.0", True),
    ],
)
def test_version_range(constraint: str, version: str, ok: bool) -> None:
    assert VersionRange.parse(constraint).satisfied_by(Version.parse(version)) is ok


@pytest.mark.parametrize("text", ["", ">=", ">= banana", "|| >= 1.0.0", ">= >= 1.0.0"])
def test_version_range_errors(text: str) -> None:
    with pytest.raises(ValueError):
        VersionRange.parse(text)


def test_prerelease_target_uses_core_version(env: Env) -> None:
    text = (
        "version: v1alpha1\nmetadata:\n  name: a\n  version: b\n"
        "  compatibility: {talos: {version: '>= v1.12.0'}}\n"
    )
    tree = env.extract(_manifest(text))
    load_extension(tree, image=IMAGE, talos_version=Version.parse("1.12.0-beta.1"))
