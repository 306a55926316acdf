"""From (flavor ID, version, path) to a stored asset: the builder's pipeline.

Steps, in upstream's processing order (reference/api.md §6.1):

1. load the flavor (404 ``schematic ID "<id>" not found``), parse the version (400) and check it
   is offered (404), parse the path (400, ``paths``);
2. *enhance*: apply the flavor to the asset request with the version's ``Quirks`` — checks that
   hold for every kind (overlay, embedded config, Secure Boot) and the kind's own inputs
   (``Profile``);
3. *resolve inputs*: tags to digests (the imager image, each extension for the target arch), so
   the build key changes whenever an input is re-tagged;
4. build key = sha256 of the profile, the input digests and the errata salts;
5. ``Scheduler.get_or_build`` answers from the cache or runs the kind's assembler once.

Assemblers live in ``assets``; this module only plans.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from image_service.errors import Unavailable
from image_service.flavor.canonical import emit_mapping
from image_service.flavor.model import Flavor
from image_service.oci import Platform, RegistryClient, RegistryError
from image_service.versions import Version
from services.builder.assets import Assembler, AssetInputs, ExtensionInput, OverlayInput
from services.builder.errors import InvalidProfile, KindNotBuilt, go_quote
from services.builder.formats.installer import installer_base_repository
from services.builder.formats.iso import plan_iso
from services.builder.inputs.catalogs import Peers
from services.builder.scheduler import Built, Scheduler
from services.builder.talos.cmdline import build_cmdline
from services.builder.talos.downloads import content_type
from services.builder.talos.paths import AssetKind, AssetRequest, parse_path
from services.builder.talos.quirks import Quirks, quirks_for, select_bootloader

__all__ = ["ERRATA_SALTS", "IMAGER_REPO", "BuildResult", "Pipeline", "Profile"]

IMAGER_REPO = "siderolabs/imager"

# Appended to every build key; add a line when a fixed bug must invalidate cached assets.
ERRATA_SALTS: tuple[str, ...] = ("image-service initramfs layout v1",)

BUILT_KINDS = frozenset(
    {
        AssetKind.KERNEL,
        AssetKind.CMDLINE,
        AssetKind.INITRAMFS,
        AssetKind.UKI,
        AssetKind.INSTALLER,
        AssetKind.IMAGE,
        AssetKind.ISO,
    }
)
# sd-boot's secure-boot-enroll modes (flavor secureboot.enrollKeys).
ENROLL_MODES = frozenset({"off", "manual", "if-safe", "force"})
# Kinds whose output holds the initramfs with the flavor's extensions (api.md §6.5).
WITH_INITRAMFS = frozenset(
    {AssetKind.INITRAMFS, AssetKind.UKI, AssetKind.ISO, AssetKind.IMAGE, AssetKind.INSTALLER}
)
# Kinds whose output carries a kernel command line.
WITH_CMDLINE = frozenset(
    {AssetKind.CMDLINE, AssetKind.UKI, AssetKind.ISO, AssetKind.IMAGE, AssetKind.INSTALLER}
)


def _cmdline(request: AssetRequest, flavor: Flavor, version: Version, quirks: Quirks) -> str:
    """The kernel command line baked into (or served as) the asset, per api.md §6.5.

    META goes on the cmdline for cmdline and ISO assets and into the META partition for disk
    images; extraKernelArgs reach UKIs and installers only from Talos 1.10 or with Secure Boot.
    """
    custom = flavor.customization
    kind = request.kind
    extra = custom.extra_kernel_args
    meta = tuple((m.key, m.value) for m in custom.meta)
    if kind in (AssetKind.UKI, AssetKind.INSTALLER):
        if not (quirks.bakes_extra_kernel_args or request.secureboot):
            extra = ()
        meta = ()
    if kind is AssetKind.IMAGE:
        meta = ()
    return build_cmdline(
        request.platform,
        request.arch,
        version,
        secureboot=request.secureboot,
        iso=kind is AssetKind.ISO,
        meta=meta,
        extra_args=extra,
        output_is_image=kind is AssetKind.IMAGE,
    )


Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class Profile:
    """Everything about the asset that does not come from a registry (hashed into the key)."""

    kind: str
    platform: str
    arch: str
    secureboot: bool
    version: str
    flavor_id: str = ""  # only for kinds that embed the flavor (the schematic extension)
    extensions: tuple[str, ...] = ()
    meta: tuple[tuple[int, str], ...] = ()
    external_url: str = ""
    embedded_config: str = ""
    cmdline: str = ""
    signing: str = ""  # identity of the Secure Boot keys that sign the asset
    bootloader: str = ""
    enroll_keys: str = ""
    disk_format: str = ""
    compression: str = ""
    sector_size: int = 0
    overlay: str = ""


@dataclass(frozen=True)
class BuildResult:
    request: AssetRequest
    built: Built
    filename: str
    content_type: str


@dataclass
class _Plan:
    profile: Profile
    inputs: AssetInputs
    key_material: dict[str, object] = field(default_factory=dict)


class Pipeline:
    def __init__(
        self,
        *,
        peers: Peers,
        release: RegistryClient,
        scheduler: Scheduler,
        assembler: Assembler,
        external_url: str,
        signing_identity: str | None,
    ) -> None:
        self._peers = peers
        self._release = release
        self._scheduler = scheduler
        self._assembler = assembler
        self._external_url = external_url
        self._secureboot = signing_identity is not None
        self._signing_identity = signing_identity or ""

    async def build(
        self, flavor_id: str, version_text: str, path: str, progress: Progress
    ) -> BuildResult:
        flavor, canonical = await self._peers.flavor(flavor_id)
        version = await self._peers.version(version_text)
        request = parse_path(path)
        quirks = quirks_for(version)
        self._check_common(request, flavor, version, quirks)
        if request.kind not in BUILT_KINDS:
            raise KindNotBuilt(str(request.kind))
        progress("resolving", "resolving inputs")
        plan = await self._plan(
            request,
            flavor_id=flavor_id,
            flavor=flavor,
            canonical=canonical,
            version=version,
            quirks=quirks,
        )
        key = _build_key(plan)
        progress("building", f"build key {key}")
        built = await self._scheduler.get_or_build(
            key, str(request.kind), lambda work: self._assembler.assemble(plan.inputs, work)
        )
        return BuildResult(request, built, path, content_type(path))

    def _check_common(
        self, request: AssetRequest, flavor: Flavor, version: Version, quirks: Quirks
    ) -> None:
        overlay = flavor.overlay
        if (overlay.name or overlay.image) and not quirks.supports_overlays:
            raise InvalidProfile.overlay_unsupported(version)
        boot_files_only = request.kind in (AssetKind.KERNEL, AssetKind.CMDLINE)
        config = flavor.customization.embedded_machine_configuration
        if config and not boot_files_only and not quirks.embedded_config:
            raise InvalidProfile.embedded_config_unsupported(version)
        if request.secureboot and not self._secureboot:
            raise InvalidProfile.secureboot_disabled()

    async def _plan(
        self,
        request: AssetRequest,
        *,
        flavor_id: str,
        flavor: Flavor,
        canonical: bytes,
        version: Version,
        quirks: Quirks,
    ) -> _Plan:
        custom = flavor.customization
        kind = request.kind
        imager = await self._manifest_digest(IMAGER_REPO, version.tag, None)
        profile = Profile(
            kind=str(kind),
            platform=request.platform,
            arch=str(request.arch),
            secureboot=request.secureboot,
            version=str(version),
            signing=self._signing_identity if request.secureboot else "",
        )
        extensions: list[ExtensionInput] = []
        if kind in WITH_INITRAMFS:
            resolved = await self._peers.extensions(version, custom.system_extensions)
            platform = Platform("linux", str(request.arch))
            for ext in resolved:
                digest = await self._manifest_digest(ext.repository, ext.digest, platform)
                extensions.append(ExtensionInput(ext.name, ext.repository, digest))
            profile = replace(
                profile,
                flavor_id=flavor_id,
                extensions=tuple(f"{e.name}@{e.manifest_digest}" for e in extensions),
                external_url=self._external_url,
                embedded_config=custom.embedded_machine_configuration
                if quirks.embedded_config
                else "",
            )
        overlay = None
        if flavor.overlay.name and kind in WITH_INITRAMFS:
            if kind is not AssetKind.INSTALLER:
                raise KindNotBuilt(f"board overlay {kind}")
            found = await self._peers.overlay(version, flavor.overlay.name)
            digest = await self._manifest_digest(
                found.repository, found.digest, Platform("linux", str(request.arch))
            )
            overlay = OverlayInput(
                name=flavor.overlay.name,
                repository=found.repository,
                manifest_digest=digest,
                options=emit_mapping(flavor.overlay.options.entries)
                if flavor.overlay.options.entries
                else "",
            )
            profile = replace(profile, overlay=f"{overlay.name}@{digest}:{overlay.options}")
        if kind in WITH_CMDLINE:
            profile = replace(profile, cmdline=_cmdline(request, flavor, version, quirks))
        if kind is AssetKind.IMAGE:
            profile = replace(
                profile,
                meta=tuple((m.key, m.value) for m in custom.meta),
                disk_format=str(request.disk_format),
                compression=str(request.compression),
                sector_size=custom.disk_image.sector_size or 512,
            )
        if kind is AssetKind.IMAGE:
            bootloader = str(
                select_bootloader(
                    quirks,
                    str(request.arch),
                    secureboot=request.secureboot,
                    requested=str(custom.bootloader),
                )
            )
        elif kind is AssetKind.ISO:
            bootloader = str(
                plan_iso(
                    quirks,
                    str(request.arch),
                    secureboot=request.secureboot,
                    requested=str(custom.bootloader),
                )
            )
        if kind in (AssetKind.IMAGE, AssetKind.ISO):
            enroll = custom.secureboot.enroll_keys or "if-safe"
            if request.secureboot and enroll not in ENROLL_MODES:
                raise InvalidProfile(
                    f"invalid secureboot enrollKeys value {go_quote(enroll)}: {enroll} does not "
                    "belong to SDBootEnrollKeys values"
                )
            profile = replace(profile, bootloader=bootloader, enroll_keys=enroll)
        base = ""
        if kind is AssetKind.INSTALLER:
            base = await self._manifest_digest(
                installer_base_repository(quirks),
                version.tag,
                Platform("linux", str(request.arch)),
            )
        inputs = AssetInputs(
            request=request,
            version=version,
            quirks=quirks,
            imager_digest=imager,
            extensions=tuple(extensions),
            flavor_id=flavor_id,
            canonical_flavor=canonical,
            cmdline=profile.cmdline,
            meta=profile.meta,
            external_url=self._external_url,
            embedded_config=profile.embedded_config,
            installer_base_digest=base,
            bootloader=profile.bootloader,
            enroll_keys=profile.enroll_keys,
            sector_size=profile.sector_size,
            overlay=overlay,
        )
        material: dict[str, object] = {
            "profile": asdict(profile),
            "imager": imager,
            "installer_base": base,
            "salts": list(ERRATA_SALTS),
        }
        return _Plan(profile, inputs, material)

    async def _manifest_digest(self, repo: str, reference: str, platform: Platform | None) -> str:
        try:
            fetched = await self._release.get_manifest(repo, reference, platform=platform)
        except RegistryError as exc:
            raise Unavailable(f"cannot resolve {self._release.registry}/{repo}: {exc}") from exc
        return fetched.digest


def _build_key(plan: _Plan) -> str:
    text = json.dumps(plan.key_material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
