"""The initramfs with extensions, built from the test release's real base initramfs files and
extension images (OCI layouts on disk), checked by parsing the output with independent tools
(GNU cpio, xz, zstd, unsquashfs) and by booting it in QEMU; plus the virtual extensions, the
version options and the tool runner they rely on."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
import yaml

from image_service.versions import Version
from services.builder.errors import BuildFailed
from services.builder.formats.cpio import CpioReader
from services.builder.formats.initramfs import (
    ExtensionLayers,
    InitramfsOptions,
    InitramfsReport,
    build_initramfs,
    embedded_config_extension,
    schematic_extension,
)
from services.builder.inputs.extract import InvalidExtension
from services.builder.tools import MissingTools, ToolError, check_tools, feed, run, run_async
from tests.release import Release
from tests.release.markers import parse_markers
from tests.support.qemu import boot

CANONICAL = (
    "customization:\n"
    "    systemExtensions:\n"
    "        officialExtensions:\n"
    "            - siderolabs/gasket-driver\n"
    "            - siderolabs/gvisor\n"
)
FLAVOR_ID = hashlib.sha256(CANONICAL.encode()).hexdigest()
EXTERNAL_URL = "https://factory.example.test/"


# --- helpers -------------------------------------------------------------------------------------


def extension_layers(release: Release, version: str, name: str, arch: str) -> ExtensionLayers:
    """An extension's layer blobs for ``arch``, read from the release's OCI layout."""
    ext = release.version(version).extension(name)
    layout = release.root / "layouts" / ext.name.split("/", 1)[1]

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

    index = json.loads(blob(ext.digest).read_text())
    entry = next(m for m in index["manifests"] if m["platform"]["architecture"] == arch)
    manifest = json.loads(blob(entry["digest"]).read_text())
    return ExtensionLayers(ext.ref(), tuple(blob(layer["digest"]) for layer in manifest["layers"]))


def layer_files(layers: ExtensionLayers) -> dict[str, bytes]:
    """Regular files of an extension image, read with tarfile (independent of our extractor)."""
    out = {}
    for layer in layers.layers:
        with tarfile.open(layer) as tar:
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    out[member.name.removeprefix("./")] = handle.read()
    return out


def schematic_layers(tmp: Path, with_extra_info: bool = True) -> ExtensionLayers:
    path = tmp / "schematic.tar"
    path.write_bytes(
        schematic_extension(FLAVOR_ID, CANONICAL, EXTERNAL_URL, with_extra_info=with_extra_info)
    )
    return ExtensionLayers("schematic", (path,))


def build(
    release: Release,
    version: str,
    arch: str,
    tmp: Path,
    names: list[str] | None = None,
    *,
    name: str = "out",
) -> tuple[Path, InitramfsReport, list[ExtensionLayers]]:
    tv = release.version(version)
    wanted = [e.name for e in tv.extensions] if names is None else names
    exts = [extension_layers(release, version, n, arch) for n in wanted]
    exts.append(schematic_layers(tmp))
    out = tmp / f"{name}.img"
    report = build_initramfs(
        tv.arches[arch].initramfs,
        exts,
        InitramfsOptions.for_version(Version.parse(version)),
        tmp / f"{name}-work",
        out,
    )
    return out, report, exts


@dataclass
class Layout:
    early: dict[str, bytes]  # the uncompressed microcode cpio: name -> data ("" for dirs)
    base_offset: int
    tail: bytes  # the appended compressed stream


def split_layout(out: Path, base: Path) -> Layout:
    data = out.read_bytes()
    early: dict[str, bytes] = {}
    offset = 0
    if data.startswith(b"070701"):
        reader = CpioReader(io.BytesIO(data))
        early = {m.name: d.read() for m, d in reader}
        assert reader.end is not None
        offset = reader.end
    base_bytes = base.read_bytes()
    assert data[offset : offset + len(base_bytes)] == base_bytes, "base not copied verbatim"
    return Layout(early, offset, data[offset + len(base_bytes) :])


def unpack_tail(tail: bytes, compression: str, dest: Path) -> list[str]:
    """Decompress with the xz/zstd binaries, list and unpack with GNU cpio."""
    raw = subprocess.run([compression, "-dc"], input=tail, capture_output=True, check=True).stdout
    names = subprocess.run(
        ["cpio", "-t", "--quiet"], input=raw, capture_output=True, check=True
    ).stdout.decode()
    dest.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=raw, cwd=dest, check=True)
    return names.splitlines()


def squashfs_list(path: Path) -> list[str]:
    text = subprocess.run(
        ["unsquashfs", "-l", "-d", "", path], capture_output=True, check=True, text=True
    ).stdout
    return sorted(line.lstrip("/") for line in text.splitlines() if line.startswith("/"))


def squashfs_compression(path: Path) -> str:
    text = run(["unsquashfs", "-s", path], check=False).stdout.decode()
    return next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("Compression "))


# --- layout --------------------------------------------------------------------------------------


def test_layout_v1_7_7_xz(test_release: Release, tmp_path: Path) -> None:
    tv = test_release.version("v1.7.7")
    kver = tv.arches["amd64"].kernel_release
    out, report, exts = build(test_release, "v1.7.7", "amd64", tmp_path)
    layout = split_layout(out, tv.arches["amd64"].initramfs)

    # Early microcode: every matching blob of every extension, in extension order then name.
    files = {e.image: layer_files(e) for e in exts}
    want = {"GenuineIntel.bin": b"", "AuthenticAMD.bin": b""}
    for e in exts:
        for name, data in sorted(files[e.image].items()):
            if name.startswith("rootfs/lib/firmware/intel-ucode/"):
                want["GenuineIntel.bin"] += data
            elif name.startswith("rootfs/lib/firmware/amd-ucode/microcode_amd"):
                want["AuthenticAMD.bin"] += data
    assert list(layout.early) == [
        "kernel",
        "kernel/x86",
        "kernel/x86/microcode",
        "kernel/x86/microcode/AuthenticAMD.bin",
        "kernel/x86/microcode/GenuineIntel.bin",
    ]
    assert layout.early["kernel/x86/microcode/GenuineIntel.bin"] == want["GenuineIntel.bin"]
    assert layout.early["kernel/x86/microcode/AuthenticAMD.bin"] == want["AuthenticAMD.bin"]
    assert b"FAKE-INTEL-UCODE 06-55-04" in want["GenuineIntel.bin"]

    # The appended stream: xz with a CRC32 check (the kernel cannot read CRC64).
    (tmp_path / "tail.xz").write_bytes(layout.tail)
    listing = run(["xz", "--robot", "--list", tmp_path / "tail.xz"]).stdout.decode()
    assert "\tCRC32\t" in listing and "CRC64" not in listing
    names = unpack_tail(layout.tail, "xz", tmp_path / "tail")
    n = len(exts)
    assert names == [
        *(f"{i}.sqsh" for i in range(n)),
        "extensions.yaml",
        "lib",
        "lib/firmware",
        "lib/firmware/amd-ucode",
        "lib/firmware/amd-ucode/README",  # not microcode: stays firmware
        "lib/firmware/amdgpu",
        "lib/firmware/amdgpu/navi10_smc.bin",
        "lib/firmware/amdgpu/navi10_sos.bin",
        "lib/firmware/intel-ucode",
        "modules.dep.sqsh",
    ]
    tail = tmp_path / "tail"
    doc = yaml.safe_load((tail / "extensions.yaml").read_text())
    layers = [(x["image"], x["metadata"]["name"], x["metadata"]["version"]) for x in doc["layers"]]
    assert layers == [
        *((f"{i}.sqsh", e.manifest_name, e.version) for i, e in enumerate(tv.extensions)),
        (f"{n - 1}.sqsh", "schematic", FLAVOR_ID),
        ("modules.dep.sqsh", "modules.dep", kver),
    ]
    schematic = doc["layers"][-2]["metadata"]
    assert schematic["extraInfo"] == CANONICAL
    assert schematic["author"] == f"Image Factory ({EXTERNAL_URL})"
    assert doc["layers"][0]["metadata"]["compatibility"] == {"talos": {"version": ">= v1.7.0"}}
    assert [(x.image, x.name, x.version) for x in report.layers] == layers

    # Squashfs contents and compression (xz before 1.8).
    gasket = tv.extensions.index(tv.extension("gasket-driver"))
    assert f"lib/modules/{kver}/extras/dummy.ko" in squashfs_list(tail / f"{gasket}.sqsh")
    assert f"usr/local/share/schematic/{FLAVOR_ID}" in squashfs_list(tail / f"{n - 1}.sqsh")
    amd = tv.extensions.index(tv.extension("amd-ucode"))
    assert not [p for p in squashfs_list(tail / f"{amd}.sqsh") if "firmware/" in p]
    modules_dep = squashfs_list(tail / "modules.dep.sqsh")
    assert f"lib/modules/{kver}/modules.dep" in modules_dep
    assert all(p.split("/")[-1].startswith("modules.") for p in modules_dep if p.count("/") == 3)
    dep = run(
        ["unsquashfs", "-cat", tail / "modules.dep.sqsh", f"lib/modules/{kver}/modules.dep"]
    ).stdout.decode()
    assert "extras/dummy.ko:" in dep
    assert "kernel/fs/overlayfs/overlay.ko:" in dep  # the base rootfs modules are included
    assert {squashfs_compression(tail / f"{i}.sqsh") for i in range(n)} == {"xz"}
    assert report.kernel_version == kver
    assert report.size == out.stat().st_size


def test_layout_v1_11_3_zstd(test_release: Release, tmp_path: Path) -> None:
    tv = test_release.version("v1.11.3")
    out, report, _ = build(test_release, "v1.11.3", "arm64", tmp_path)
    layout = split_layout(out, tv.arches["arm64"].initramfs)
    assert layout.tail.startswith(b"\x28\xb5\x2f\xfd")
    run(["zstd", "-q", "-t"], stdin=layout.tail)
    names = unpack_tail(layout.tail, "zstd", tmp_path / "tail")
    assert "usr/lib/firmware/amdgpu/navi10_smc.bin" in names
    assert not [x for x in names if x.startswith(("lib/", "kernel"))]
    assert squashfs_compression(tmp_path / "tail/0.sqsh") == "zstd"
    kver = tv.arches["arm64"].kernel_release
    assert f"usr/lib/modules/{kver}/modules.dep" in squashfs_list(
        tmp_path / "tail/modules.dep.sqsh"
    )
    assert report.firmware == (
        "usr/lib/firmware/amd-ucode/README",
        "usr/lib/firmware/amdgpu/navi10_smc.bin",
        "usr/lib/firmware/amdgpu/navi10_sos.bin",
    )


def test_without_microcode_or_modules(test_release: Release, tmp_path: Path) -> None:
    tv = test_release.version("v1.11.3")
    out, report, _ = build(test_release, "v1.11.3", "amd64", tmp_path, ["gvisor"])
    layout = split_layout(out, tv.arches["amd64"].initramfs)
    assert layout.early == {}
    assert layout.base_offset == 0  # the file starts with the base stream itself
    names = unpack_tail(layout.tail, "zstd", tmp_path / "tail")
    assert names == ["0.sqsh", "1.sqsh", "extensions.yaml"]
    assert report.kernel_version is None
    assert [x.name for x in report.layers] == ["gvisor", "schematic"]


def test_no_extensions_is_the_base(test_release: Release, tmp_path: Path) -> None:
    base = test_release.version("v1.7.7").arches["amd64"].initramfs
    options = InitramfsOptions.for_version(Version.parse("1.7.7"))
    report = build_initramfs(base, [], options, tmp_path / "w", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == base.read_bytes()
    assert report.layers == ()


def test_reproducible_whatever_the_umask(test_release: Release, tmp_path: Path) -> None:
    one, _, _ = build(test_release, "v1.11.3", "amd64", tmp_path, name="one")
    old = os.umask(0o077)
    try:
        two, _, _ = build(test_release, "v1.11.3", "amd64", tmp_path, name="two")
    finally:
        os.umask(old)
    assert one.read_bytes() == two.read_bytes()


def test_incompatible_extension_is_a_clear_400(test_release: Release, tmp_path: Path) -> None:
    ext = extension_layers(test_release, "v1.7.7", "gvisor", "amd64")
    base = test_release.version("v1.7.7").arches["amd64"].initramfs
    options = InitramfsOptions.for_version(Version.parse("1.6.4"))
    with pytest.raises(InvalidExtension) as info:
        build_initramfs(base, [ext], options, tmp_path / "w", tmp_path / "out")
    assert str(info.value) == (
        f'extension {ext.image}: version constraint ">= v1.7.0" can\'t be satisfied with '
        "Talos version v1.6.4"
    )
    assert not (tmp_path / "out").exists()


def _tiny_extension(tmp: Path, name: str, files: dict[str, bytes]) -> ExtensionLayers:
    manifest = (
        f"version: v1alpha1\nmetadata:\n  name: {name}\n  version: '1.0'\n"
        "  author: tests\n  description: tiny\n"
        "  compatibility:\n    talos:\n      version: '>= v1.0.0'\n"
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in {"manifest.yaml": manifest, **files}.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    layer = tmp / f"{name}.tar"
    layer.write_bytes(buf.getvalue())
    return ExtensionLayers(f"example/{name}", (layer,))


def test_modules_for_another_kernel_are_refused(test_release: Release, tmp_path: Path) -> None:
    ext = _tiny_extension(tmp_path, "odd", {"rootfs/usr/lib/modules/9.9.9-odd/x.ko": b"\0"})
    base = test_release.version("v1.11.3").arches["amd64"].initramfs
    options = InitramfsOptions.for_version(Version.parse("1.11.3"))
    with pytest.raises(InvalidExtension, match=r"ships kernel modules for 9\.9\.9-odd, but the"):
        build_initramfs(base, [ext], options, tmp_path / "w", tmp_path / "out")


def test_layers_stay_in_input_order_beyond_ten(test_release: Release, tmp_path: Path) -> None:
    # Upstream's directory listing would put 10.sqsh (the schematic) third; we keep it last.
    exts = [
        _tiny_extension(tmp_path, f"ext{i}", {f"rootfs/usr/local/ext{i}": b"x"}) for i in range(11)
    ]
    exts.append(schematic_layers(tmp_path))
    base = test_release.version("v1.11.3").arches["amd64"].initramfs
    options = InitramfsOptions.for_version(Version.parse("1.11.3"))
    report = build_initramfs(base, exts, options, tmp_path / "w", tmp_path / "out")
    assert [x.image for x in report.layers] == [f"{i}.sqsh" for i in range(12)]
    assert [x.name for x in report.layers] == [*(f"ext{i}" for i in range(11)), "schematic"]
    doc = yaml.safe_load((tmp_path / "w/initramfs/extensions.yaml").read_text())
    assert [x["metadata"]["name"] for x in doc["layers"]][-1] == "schematic"


def _mksquashfs_version() -> tuple[int, int]:
    text = run(["mksquashfs", "-version"], check=False).stdout.decode()
    major, minor = text.split("version ", 1)[1].split()[0].split(".")[:2]
    return int(major), int(minor)


def test_selinux_labels_from_1_13(test_release: Release, tmp_path: Path) -> None:
    base = test_release.version("v1.12.0-beta.1").arches["amd64"].initramfs
    options = InitramfsOptions.for_version(Version.parse("1.13.0"))
    gvisor = extension_layers(test_release, "v1.12.0-beta.1", "gvisor", "amd64")
    # Nothing labelled: works with any mksquashfs (no host xattrs are stored either way).
    build_initramfs(base, [gvisor], options, tmp_path / "w1", tmp_path / "plain")
    config = tmp_path / "config.tar"
    config.write_bytes(embedded_config_extension("version: v1alpha1\n"))
    exts = [gvisor, ExtensionLayers("embedded-config", (config,))]
    if _mksquashfs_version() >= (4, 6):
        build_initramfs(base, exts, options, tmp_path / "w2", tmp_path / "labelled")
    else:
        with pytest.raises(BuildFailed, match=r"needs mksquashfs 4\.6 or newer"):
            build_initramfs(base, exts, options, tmp_path / "w2", tmp_path / "labelled")
        assert not (tmp_path / "labelled").exists()


# --- virtual extensions --------------------------------------------------------------------------

# api.md §12, byte for byte.
SCHEMATIC_MANIFEST = f"""\
version: v1alpha1
metadata:
    name: schematic
    version: {FLAVOR_ID}
    author: Image Factory ({EXTERNAL_URL})
    description: Virtual extension which specifies the schematic of the image built with schematic.
    compatibility:
        talos:
            version: '>= 1.0.0'
    extraInfo: |
        customization:
            systemExtensions:
                officialExtensions:
                    - siderolabs/gasket-driver
                    - siderolabs/gvisor
"""


def _members(data: bytes) -> list[tuple[str, str, int, bytes, dict[str, str]]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            handle = tar.extractfile(m) if m.isfile() else None
            kind = "dir" if m.isdir() else "file"
            content = handle.read() if handle else b""
            out.append((m.name, kind, m.mode, content, dict(m.pax_headers)))
    return out


def test_schematic_extension_matches_the_contract() -> None:
    data = schematic_extension(FLAVOR_ID, CANONICAL, EXTERNAL_URL, with_extra_info=True)
    members = _members(data)
    assert [(name, kind, mode) for name, kind, mode, _, _ in members] == [
        ("manifest.yaml", "file", 0o644),
        ("rootfs", "dir", 0o755),
        ("rootfs/usr", "dir", 0o755),
        ("rootfs/usr/local", "dir", 0o755),
        ("rootfs/usr/local/share", "dir", 0o755),
        ("rootfs/usr/local/share/schematic", "dir", 0o755),
        (f"rootfs/usr/local/share/schematic/{FLAVOR_ID}", "file", 0o644),
    ]
    assert members[0][3].decode() == SCHEMATIC_MANIFEST
    assert members[-1][3] == b""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getmember("rootfs/usr/local/share").name == "rootfs/usr/local/share"
        assert tar.getmember(f"rootfs/usr/local/share/schematic/{FLAVOR_ID}").uid == 0


def test_schematic_extension_before_1_7_has_no_extra_info() -> None:
    data = schematic_extension(FLAVOR_ID, CANONICAL, EXTERNAL_URL, with_extra_info=False)
    manifest = _members(data)[0][3].decode()
    assert manifest == SCHEMATIC_MANIFEST.split("    extraInfo:", maxsplit=1)[0]


def test_schematic_extension_refuses_a_bad_id() -> None:
    with pytest.raises(ValueError, match="not a schematic ID"):
        schematic_extension("../../etc", CANONICAL, EXTERNAL_URL, with_extra_info=True)


def test_embedded_config_extension() -> None:
    config = "version: v1alpha1\nmachine:\n  type: worker\n"
    members = _members(embedded_config_extension(config))
    digest = hashlib.sha256(config.encode()).hexdigest()
    assert members[0][3].decode() == (
        "version: v1alpha1\nmetadata:\n    name: embedded-config\n"
        f"    version: {digest}\n    author: Imager\n"
        "    description: Virtual extension which embeds the machine configuration.\n"
        "    compatibility:\n        talos:\n            version: '>= 1.0.0'\n"
    )
    name, kind, mode, content, pax = members[-1]
    assert (name, kind, mode, content.decode()) == (
        "rootfs/usr/local/etc/talos/config.yaml",
        "file",
        0o400,
        config,
    )
    assert pax["SCHILY.xattr.security.selinux"] == "system_u:object_r:system_state_t:s0"
    assert [m[0] for m in members[1:-1]] == [
        "rootfs",
        "rootfs/usr",
        "rootfs/usr/local",
        "rootfs/usr/local/etc",
        "rootfs/usr/local/etc/talos",
    ]


@pytest.mark.parametrize(
    ("version", "compressor", "squashfs", "firmware", "selinux"),
    [
        ("1.7.7", "xz", ("-comp", "xz", "-Xdict-size", "100%"), "/lib/firmware", False),
        ("1.8.0", "zstd", ("-comp", "zstd", "-Xcompression-level", "18"), "/lib/firmware", False),
        (
            "1.11.3",
            "zstd",
            ("-comp", "zstd", "-Xcompression-level", "18"),
            "/usr/lib/firmware",
            False,
        ),
        (
            "1.13.0",
            "zstd",
            ("-comp", "zstd", "-Xcompression-level", "18"),
            "/usr/lib/firmware",
            True,
        ),
    ],
)
def test_options_follow_the_quirks(
    version: str, compressor: str, squashfs: tuple[str, ...], firmware: str, selinux: bool
) -> None:
    options = InitramfsOptions.for_version(Version.parse(version))
    assert options.compressor_argv[0] == compressor
    if compressor == "xz":
        assert options.compressor_argv[2:4] == ("-C", "crc32")
    assert options.squashfs_args == squashfs
    assert options.firmware_dir == firmware
    assert options.modules_dir == firmware.replace("firmware", "modules")
    assert options.selinux_labels is selinux


# --- the tool runner -----------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Running (a zombie left for a non-reaping PID 1 in a container counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_tool_error_names_tool_exit_code_and_stderr() -> None:
    with pytest.raises(ToolError) as info:
        run(["sh", "-c", "echo first >&2; echo 'the real problem' >&2; exit 3"])
    assert info.value.tool == "sh"
    assert info.value.returncode == 3
    assert str(info.value).startswith("sh: failed with exit code 3\n")
    assert "the real problem" in str(info.value)


def test_missing_tools_name_their_packages() -> None:
    with pytest.raises(ToolError, match=r"mksquashfs-nope: not found"):
        run(["mksquashfs-nope"])
    with pytest.raises(MissingTools) as info:
        check_tools(["sh", "no-such-tool", "depmod-missing"])
    assert info.value.missing == ("no-such-tool", "depmod-missing")
    check_tools(["mksquashfs", "unsquashfs", "depmod", "xz", "zstd"])
    missing = MissingTools(["unsquashfs", "depmod"])
    assert "unsquashfs (Debian package squashfs-tools)" in str(missing)
    assert "apt-get install kmod squashfs-tools" in str(missing)


def test_environment_is_clean_and_stdin_is_devnull() -> None:
    env = run(["env"]).stdout.decode().splitlines()
    assert sorted(line.split("=", 1)[0] for line in env) == [
        "LANG", "LC_ALL", "PATH", "SOURCE_DATE_EPOCH", "TZ",
    ]  # fmt: skip
    assert "SOURCE_DATE_EPOCH=1559424892" in env
    assert run(["cat"], timeout=10).stdout == b""
    assert run(["cat"], stdin=b"given").stdout == b"given"


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(ToolError, match=r"timed out after 1s"):
        run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], timeout=1)
    assert time.monotonic() - start < 5
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(grandchild)


def test_feed_reports_a_tool_that_stops_reading(tmp_path: Path) -> None:
    def produce(pipe: BinaryIO) -> None:
        for _ in range(100):
            pipe.write(b"x" * (1 << 16))

    with pytest.raises(ToolError, match=r"sh: stopped reading its input \(exit code 7\)"):
        script = "head -c 10 >/dev/null; echo nope >&2; exit 7"
        feed(["sh", "-c", script], produce, stdout=tmp_path / "o")


def test_run_async_kills_the_child_on_cancellation(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        task = asyncio.create_task(run_async(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"]))
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not _alive(int(pidfile.read_text()))
    assert asyncio.run(run_async(["echo", "hi"])).stdout == b"hi\n"


# --- boot ----------------------------------------------------------------------------------------


@pytest.mark.boot
@pytest.mark.parametrize(
    ("version", "arch"), [("v1.7.7", "amd64"), ("v1.11.3", "amd64"), ("v1.11.3", "arm64")]
)
def test_boot_lists_every_extension_and_the_schematic(
    test_release: Release, tmp_path: Path, version: str, arch: str
) -> None:
    tv = test_release.version(version)
    artifacts = tv.arches[arch]
    out, report, _ = build(test_release, version, arch, tmp_path)
    console = "ttyS0" if arch == "amd64" else "ttyAMA0"
    result = boot(
        arch,
        tmp_path / "boot",
        kernel=artifacts.vmlinuz,
        initrd=out,
        append=f"console={console} panic=-1",
        stop_on=["FIXTURE-DONE", "Kernel panic"],
        timeout=180,
    )
    markers = parse_markers(result.log)
    assert markers.done, result.describe()
    assert markers.rootfs == version
    assert [(x.name, x.version) for x in markers.extensions] == [
        *((e.manifest_name, e.version) for e in tv.extensions),
        ("schematic", FLAVOR_ID),
        ("modules.dep", artifacts.kernel_release),
    ]
    assert [x.image for x in markers.extensions] == [x.image for x in report.layers]
    assert markers.extension_failures == []
    assert markers.schematics == [FLAVOR_ID]
    assert markers.overlay is not None and markers.overlay.startswith("ok "), result.describe()
    assert markers.depmod == ["extras/dummy.ko"]
    assert markers.kmods.get("dummy") == "loaded"
    assert f"/{tv.firmware_dir}/amdgpu/navi10_smc.bin" in markers.firmware_files
    assert markers.microcode is not None
    assert sorted(m.split(":")[0] for m in markers.microcode) == [
        "AuthenticAMD.bin",
        "GenuineIntel.bin",
    ]
