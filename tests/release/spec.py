"""What the synthetic Talos test release contains, as data.

The builder (``build.py``) turns this into OCI image layouts; nothing here does I/O. Paths inside
extension and overlay images may use three placeholders, filled in per Talos version and arch:
``{fw}`` (firmware dir: ``lib/firmware`` before 1.10, ``usr/lib/firmware`` from 1.10),
``{mod}`` (``lib/modules`` / ``usr/lib/modules``) and ``{kver}`` (the kernel release string).

Deviations from real Talos, on purpose (also documented on ``Release``):

* One Debian bookworm kernel (6.1) serves every Talos version; real Talos ships a different kernel
  per release (6.6 in 1.7, 6.12 in 1.10+). The amd64 kernel is Debian's xz bzImage and the arm64
  kernel an uncompressed ``Image`` for all versions (real ≥ 1.8: zstd bzImage / EFI zboot PE).
* The base initramfs holds ``init`` and ``rootfs.sqsh`` like upstream, **plus** a ``fixture/``
  directory (``busybox`` and the ``loop``/``squashfs`` modules). Upstream ``init`` is a static Go
  binary that mounts ``rootfs.sqsh`` itself; ours is a busybox shell script, which needs an
  interpreter and the two modules *before* ``rootfs.sqsh`` can be mounted (squashfs and loop are
  modules in the Debian kernel). See ``BASE_INITRAMFS_MEMBERS``.
* ``rootfs.sqsh`` holds only ``os-release``, a handful of real kernel modules (loop, squashfs,
  overlay, isofs and their ``modules.*`` files made by depmod) instead of a whole OS.
* Extension and overlay payloads are small fake files (microcode, firmware, scripts) except the
  kernel module of ``gasket-driver``, which is Debian's real ``dummy.ko`` so it loads in the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "ARCHES",
    "BASE_INITRAMFS_MEMBERS",
    "EXTENSION_MODULE",
    "EXTRA_IMAGER_TAGS",
    "EXTRA_IMAGER_TAGS_SOURCE",
    "FIXTURE_MODULES",
    "KERNEL_SUITE",
    "MIN_TALOS_VERSION",
    "NAMESPACE",
    "ROOTFS_MODULES",
    "SOURCE_DATE_EPOCH",
    "TALOSCTL_TARGETS",
    "UPSTREAM_REGISTRY",
    "VERSIONS",
    "Arch",
    "Compression",
    "ExtensionSpec",
    "FileSpec",
    "OverlaySpec",
    "VersionSpec",
]

# Image Factory's own SOURCE_DATE_EPOCH (talos-assets.md §16); every mtime in the release.
SOURCE_DATE_EPOCH = 1559424892
UPSTREAM_REGISTRY = "ghcr.io"
NAMESPACE = "siderolabs"
MIN_TALOS_VERSION = "1.5.0"
KERNEL_SUITE = "bookworm"


class Arch(StrEnum):
    AMD64 = "amd64"
    ARM64 = "arm64"


ARCHES: tuple[Arch, ...] = (Arch.AMD64, Arch.ARM64)


class Compression(StrEnum):
    XZ = "xz"
    ZSTD = "zstd"


# Members of every base initramfs cpio, in archive order. Upstream: only ``init`` and
# ``rootfs.sqsh``; the ``fixture/`` entries are the bootstrap our shell init needs (see above).
BASE_INITRAMFS_MEMBERS: tuple[str, ...] = (
    "fixture",
    "fixture/busybox",
    "fixture/modules",
    "fixture/modules/loop.ko",
    "fixture/modules/squashfs.ko",
    "init",
    "rootfs.sqsh",
)

# Kernel modules (by file name) the bootstrap needs before rootfs.sqsh is mounted.
FIXTURE_MODULES: tuple[str, ...] = ("loop.ko", "squashfs.ko")
# Kernel modules installed into rootfs.sqsh under <mod>/<kver>/kernel/… (paths as in the deb).
ROOTFS_MODULES: tuple[str, ...] = (
    "kernel/drivers/block/loop.ko",
    "kernel/fs/squashfs/squashfs.ko",
    "kernel/fs/overlayfs/overlay.ko",
    "kernel/fs/isofs/isofs.ko",
)
# The real module shipped by the kernel-module extension (from the same kernel deb).
EXTENSION_MODULE = "kernel/drivers/net/dummy.ko"


@dataclass(frozen=True)
class FileSpec:
    """One file in an image. ``module`` names a real kernel module (path inside the kernel deb's
    module tree) to copy instead of ``text``; ``link`` makes a symlink instead."""

    path: str
    text: str = ""
    mode: int = 0o644
    module: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class ExtensionSpec:
    name: str  # repository under siderolabs/ and metadata.name
    version: str  # metadata.version
    tag: str
    compatibility: str
    description: str
    files: tuple[FileSpec, ...]
    author: str = "Sidero Labs"

    @property
    def repo(self) -> str:
        return f"{NAMESPACE}/{self.name}"


@dataclass(frozen=True)
class OverlaySpec:
    name: str  # overlay name in overlays.yaml (rpi_generic)
    image: str  # repository under siderolabs/
    tag: str
    profile: str  # profiles/<name>.yaml content
    artifacts: tuple[FileSpec, ...]  # under artifacts/arm64/
    installer: str  # installers/<name> content (a /bin/sh script)

    @property
    def repo(self) -> str:
        return f"{NAMESPACE}/{self.image}"


@dataclass(frozen=True)
class VersionSpec:
    """One Talos release and the version quirks its layout follows (talos-assets.md §15)."""

    version: str
    initramfs_compression: Compression  # of initramfs.xz (zstd from 1.8 despite the name)
    squashfs_compression: Compression  # of rootfs.sqsh
    modules_dir: str
    firmware_dir: str
    installer_repo: str  # installer-base (≥ 1.10, one layer) or installer (legacy, two layers)
    efi_suite: str  # Debian suite of systemd-boot-efi (trixie = systemd 257 for UKI profiles)
    sbom: bool  # talos.spdx.json in the imager (≥ 1.12)
    talosctl: bool  # talosctl-all image (≥ 1.11)
    extensions: tuple[ExtensionSpec, ...]
    overlays: tuple[OverlaySpec, ...] = field(default=())

    @property
    def legacy_installer(self) -> bool:
        return self.installer_repo == "installer"


# --- extension payloads -------------------------------------------------------------------------

_RUNSC = "#!/bin/sh\necho 'runsc (test-release fixture)'\n"
_GVISOR_CRI = (
    "[plugins]\n"
    '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]\n'
    '    runtime_type = "io.containerd.runsc.v1"\n'
)
_QGA_SERVICE = (
    "name: qemu-guest-agent\n"
    "container:\n"
    "  entrypoint: ./qemu-ga\n"
    "  args:\n"
    "    - --path=/dev/virtio-ports/org.qemu.guest_agent.0\n"
    "depends:\n"
    "  - path: /dev/virtio-ports/org.qemu.guest_agent.0\n"
    "restart: always\n"
)


def _ucode_intel(tag: str, compat: str) -> ExtensionSpec:
    return ExtensionSpec(
        name="intel-ucode",
        version=tag,
        tag=tag,
        compatibility=compat,
        description="[core] This system extension provides Intel microcode binaries.\n",
        files=(
            FileSpec("{fw}/intel-ucode/06-55-04", text=f"FAKE-INTEL-UCODE 06-55-04 {tag}\n"),
            FileSpec("{fw}/intel-ucode/06-8f-08", text=f"FAKE-INTEL-UCODE 06-8f-08 {tag}\n"),
        ),
    )


def _ucode_amd(tag: str, compat: str) -> ExtensionSpec:
    return ExtensionSpec(
        name="amd-ucode",
        version=tag,
        tag=tag,
        compatibility=compat,
        description="[core] This system extension provides AMD microcode binaries.\n",
        files=(
            FileSpec("{fw}/amd-ucode/microcode_amd_fam17h.bin", text=f"FAKE-AMD-UCODE 17h {tag}\n"),
            FileSpec("{fw}/amd-ucode/microcode_amd_fam19h.bin", text=f"FAKE-AMD-UCODE 19h {tag}\n"),
            FileSpec("{fw}/amd-ucode/README", text="not microcode: stays in the firmware tree\n"),
        ),
    )


def _amdgpu(name: str, tag: str, compat: str) -> ExtensionSpec:
    return ExtensionSpec(
        name=name,
        version=tag,
        tag=tag,
        compatibility=compat,
        description="[firmware] This system extension provides AMDGPU firmware binaries.\n",
        files=(
            FileSpec("{fw}/amdgpu/navi10_smc.bin", text=f"FAKE-AMDGPU navi10_smc {tag}\n"),
            FileSpec("{fw}/amdgpu/navi10_sos.bin", text=f"FAKE-AMDGPU navi10_sos {tag}\n"),
        ),
    )


def _gasket(version: str, talos: str, compat: str) -> ExtensionSpec:
    return ExtensionSpec(
        name="gasket-driver",
        version=f"{version}-{talos}",
        tag=f"{version}-{talos}",
        compatibility=compat,
        description="[drivers] This system extension provides the gasket driver (Coral TPU).\n",
        files=(FileSpec("{mod}/{kver}/extras/dummy.ko", module=EXTENSION_MODULE),),
    )


def _gvisor(version: str, talos: str, compat: str) -> ExtensionSpec:
    return ExtensionSpec(
        name="gvisor",
        version=version,
        tag=f"{version}-{talos}",
        compatibility=compat,
        description="[container runtime] This system extension provides gVisor using containerd's"
        " runtime handler.\n",
        files=(
            FileSpec("etc/cri/conf.d/gvisor.part", text=_GVISOR_CRI),
            FileSpec("usr/local/bin/containerd-shim-runsc-v1", text=_RUNSC, mode=0o755),
            FileSpec("usr/local/bin/runsc", text=_RUNSC, mode=0o755),
        ),
    )


def _qemu_guest_agent(tag: str, compat: str) -> ExtensionSpec:
    return ExtensionSpec(
        name="qemu-guest-agent",
        version=tag,
        tag=tag,
        compatibility=compat,
        author="Markus Reiter",
        description="[guest agent] This system extension provides the QEMU Guest Agent service.\n",
        files=(
            FileSpec("usr/local/etc/containers/qemu-guest-agent.yaml", text=_QGA_SERVICE),
            FileSpec(
                "usr/local/lib/containers/qemu-guest-agent/qemu-ga",
                text="#!/bin/sh\necho 'qemu-ga (test-release fixture)'\n",
                mode=0o755,
            ),
        ),
    )


# --- overlays -------------------------------------------------------------------------------------

_RPI_PROFILE = """\
arch: arm64
platform: metal
output:
  kind: image
  outFormat: .xz
  imageOptions:
    diskSize: 1306525696
    diskFormat: raw
    bootloader: grub
"""

# The overlay installer protocol (talos-assets.md §3.5) as a POSIX sh script, so the same file
# runs on the build host whatever its arch. ``install`` copies the firmware the way the real
# rpi_generic installer does (into <mountPrefix>/boot/EFI) and writes config.txt.
_RPI_INSTALLER = """\
#!/bin/sh
# rpi_generic overlay installer (test-release fixture, tag {tag})
set -eu
cmd="${{1:-}}"
input=$(cat)
field() {{ printf '%s\\n' "$input" | sed -n "s/^ *$1: *//p" | head -n 1 | tr -d "\\"'"; }}
case "$cmd" in
get-options)
    printf '%s\\n' 'name: rpi_generic' 'kernelArgs:' '    - console=tty0' \\
        '    - console=ttyAMA0,115200' '    - sysctl.kernel.kexec_load_disabled=1' \\
        '    - talos.dashboard.disabled=1' 'partitionOptions:' '    offset: 2048'
    ;;
install)
    prefix=$(field mountPrefix)
    artifacts=$(field artifactsPath)
    mkdir -p "$prefix/boot/EFI"
    cp "$artifacts"/arm64/firmware/boot/* "$prefix/boot/EFI/"
    cp "$artifacts"/arm64/u-boot/rpi_generic/u-boot.bin "$prefix/boot/EFI/u-boot.bin"
    printf '%s\\n' '# rpi_generic {tag}' 'arm_64bit=1' 'kernel=u-boot.bin' \\
        > "$prefix/boot/EFI/config.txt"
    ;;
*)
    echo "usage: $0 get-options|install" >&2
    exit 2
    ;;
esac
"""


def _rpi(tag: str) -> OverlaySpec:
    return OverlaySpec(
        name="rpi_generic",
        image="sbc-raspberrypi",
        tag=tag,
        profile=_RPI_PROFILE,
        artifacts=(
            FileSpec("dtb/broadcom/bcm2711-rpi-4-b.dtb", text=f"FAKE-DTB bcm2711 {tag}\n"),
            FileSpec("firmware/boot/fixup4.dat", text=f"FAKE-RPI-FIRMWARE fixup4 {tag}\n"),
            FileSpec("firmware/boot/start4.elf", text=f"FAKE-RPI-FIRMWARE start4 {tag}\n"),
            FileSpec("u-boot/rpi_generic/u-boot.bin", text=f"FAKE-U-BOOT rpi_generic {tag}\n"),
        ),
        installer=_RPI_INSTALLER.format(tag=tag),
    )


# --- the releases ---------------------------------------------------------------------------------

_V17_COMPAT = ">= v1.7.0"
_V110_COMPAT = ">= v1.10.0"

# Shared by v1.11.3 and v1.12.0-beta.1: same tag, same content, same digest (as upstream, where
# firmware extensions are not rebuilt per Talos release).
_UCODE_INTEL_NEW = _ucode_intel("20250812", _V110_COMPAT)
_UCODE_AMD_NEW = _ucode_amd("20250811", _V110_COMPAT)
_AMDGPU_NEW = _amdgpu("amdgpu", "20250811", _V110_COMPAT)
_QGA_NEW = _qemu_guest_agent("10.0.2", _V110_COMPAT)
_RPI_NEW = _rpi("v0.2.0")

VERSIONS: tuple[VersionSpec, ...] = (
    VersionSpec(
        version="v1.7.7",
        initramfs_compression=Compression.XZ,
        squashfs_compression=Compression.XZ,
        modules_dir="lib/modules",
        firmware_dir="lib/firmware",
        installer_repo="installer",
        efi_suite="bookworm",
        sbom=False,
        talosctl=False,
        extensions=(
            _ucode_amd("20240513", _V17_COMPAT),
            # before the rename to siderolabs/amdgpu (schematic.md §6 alias)
            _amdgpu("amdgpu-firmware", "20240513", _V17_COMPAT),
            _gasket("97aeba5", "v1.7.7", _V17_COMPAT),
            _gvisor("20231214.0", "v1.7.7", _V17_COMPAT),
            _ucode_intel("20240531", _V17_COMPAT),
            _qemu_guest_agent("8.2.2", _V17_COMPAT),
        ),
        overlays=(_rpi("v0.1.0"),),
    ),
    VersionSpec(
        version="v1.11.3",
        initramfs_compression=Compression.ZSTD,
        squashfs_compression=Compression.ZSTD,
        modules_dir="usr/lib/modules",
        firmware_dir="usr/lib/firmware",
        installer_repo="installer-base",
        efi_suite="trixie",
        sbom=False,
        talosctl=True,
        extensions=(
            _UCODE_AMD_NEW,
            _AMDGPU_NEW,
            _gasket("5815ee3", "v1.11.3", ">= v1.11.0"),
            _gvisor("20250505.0", "v1.11.3", _V110_COMPAT),
            _UCODE_INTEL_NEW,
            _QGA_NEW,
        ),
        overlays=(_RPI_NEW,),
    ),
    VersionSpec(
        version="v1.12.0-beta.1",
        initramfs_compression=Compression.ZSTD,
        squashfs_compression=Compression.ZSTD,
        modules_dir="usr/lib/modules",
        firmware_dir="usr/lib/firmware",
        installer_repo="installer-base",
        efi_suite="trixie",
        sbom=True,
        talosctl=True,
        extensions=(
            _UCODE_AMD_NEW,
            _AMDGPU_NEW,
            # ">= v1.12.0" must accept the prerelease: only major.minor.patch are compared.
            _gasket("5815ee3", "v1.12.0-beta.1", ">= v1.12.0"),
            _gvisor("20250505.0", "v1.12.0-beta.1", _V110_COMPAT),
            _UCODE_INTEL_NEW,
            _QGA_NEW,
        ),
        overlays=(_RPI_NEW,),
    ),
)

# Imager tags that only exist to be filtered out by the /versions rules (api.md §11.1); they
# point at the v1.11.3 imager content.
EXTRA_IMAGER_TAGS_SOURCE = "v1.11.3"
EXTRA_IMAGER_TAGS: tuple[str, ...] = (
    "latest",  # unparsable
    "v1.4.0",  # below the default minimum 1.5.0
    "v1.10.0-beta.1",  # prerelease of a minor that is not the newest (1.12)
    "v1.11.0-alpha.1-5-gabcdef",  # non-conforming prerelease, old minor
    "v1.12.0-alpha.1-5-gabcdef",  # non-conforming prerelease of the newest minor
)

# talosctl-all root files for ≥ 1.11 (api.md §11.4).
TALOSCTL_TARGETS: tuple[str, ...] = (
    "talosctl-darwin-amd64",
    "talosctl-darwin-arm64",
    "talosctl-freebsd-amd64",
    "talosctl-freebsd-arm64",
    "talosctl-linux-amd64",
    "talosctl-linux-arm64",
    "talosctl-linux-armv7",
    "talosctl-windows-amd64.exe",
    "talosctl-windows-arm64.exe",
)
