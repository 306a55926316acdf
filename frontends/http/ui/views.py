"""The wizard's pages: ``GET /`` renders the current step; ``/ui/static/*`` serves its files.

The handler reads the state from the query (:mod:`frontends.http.ui.wizard`), checks every
answer in order against the catalog (versions, official extensions and overlays) and the
platform table, and renders the first step that is unanswered — or the first one whose answer
is wrong, with the reason and status 400. The final page creates the schematic through the
flavor service's ``CreateFlavor``, the call behind ``POST /schematics``, so the ID and the
stored document are the same as the API's. Every page carries a strict Content-Security-Policy:
only this origin's scripts and styles, no inline code, no framing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import jinja2
import yaml
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from frontends.common.errors import rpc_error
from frontends.http.ui.platforms import CLOUD_PLATFORMS, CloudPlatform, cloud_platform
from frontends.http.ui.wizard import (
    BOOTLOADERS,
    MAX_OPTIONS_CHARS,
    Choices,
    Step,
    Target,
    cmdline_problem,
    document,
    is_prerelease,
    next_step,
    previous_step,
    query_string,
    steps_for,
    version_key,
)
from image_service.proto import (
    builder_pb2,
    builder_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    flavor_pb2,
    flavor_pb2_grpc,
)

__all__ = ["CSP", "Wizard"]

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SECUREBOOT_SINCE = (1, 5, 0)
_BOOTLOADER_SINCE = (1, 12, 0)
_OVERLAYS_SINCE = (1, 7, 0)


class _Invalid(Exception):
    def __init__(self, step: Step, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class Link:
    label: str
    href: str


def docs_url(version: str, path: str = "") -> str:
    major, minor, _ = version_key(version)
    return f"https://www.talos.dev/v{major}.{minor}/{path}"


class Wizard:
    """The wizard's routes, bound to the flavor, catalog and builder channels."""

    def __init__(
        self, *, flavor: grpc.aio.Channel, catalog: grpc.aio.Channel, builder: grpc.aio.Channel
    ) -> None:
        self._flavors = flavor_pb2_grpc.FlavorServiceStub(flavor)
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(catalog)
        self._builder = builder_pb2_grpc.BuilderServiceStub(builder)
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.page, methods=["GET", "HEAD"]),
            Mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static"),
        ]

    async def page(self, request: Request) -> Response:
        choices = Choices.parse(request.query_params)
        try:
            context = await self._context(request, choices)
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc)
        status = 400 if context.get("error") else 200
        html = self._env.get_template(f"{context['step']}.html").render(context)
        return HTMLResponse(html, status_code=status, headers=_headers())

    async def _context(self, request: Request, choices: Choices) -> dict[str, object]:
        step = next_step(choices)
        error: str | None = None
        facts: dict[str, object] = {}
        try:
            facts = await self._check(choices, step)
        except _Invalid as invalid:
            step, error = invalid.step, str(invalid)
            facts = await self._check(choices, step, quiet=True)
        context: dict[str, object] = {
            "step": step.value,
            "error": error,
            "choices": choices,
            "hidden": choices.pairs(upto=step),
            "steps": [s.value for s in steps_for(choices)],
            "back": None,
            **facts,
        }
        previous = previous_step(choices, step)
        if previous is not None:
            context["back"] = "/?" + query_string(choices.pairs(upto=previous))
        if step is Step.FINAL:
            context.update(await self._final(request, choices, facts))
        return context

    async def _check(  # noqa: PLR0915
        self, choices: Choices, upto: Step, *, quiet: bool = False
    ) -> dict[str, object]:
        """Check every answer before ``upto`` and gather what the step ``upto`` shows."""
        facts: dict[str, object] = {"targets": [t.value for t in Target]}
        order = list(Step)

        def before(step: Step) -> bool:
            return order.index(step) < order.index(upto)

        def fail(step: Step, message: str) -> None:
            if not quiet:
                raise _Invalid(step, message)

        if before(Step.TARGET) and choices.target not in {t.value for t in Target}:
            fail(Step.TARGET, f"unknown hardware type {choices.target!r}: choose one below")
        if upto is Step.TARGET:
            return facts  # the first page needs no peer: it renders while the catalog is down
        versions = list(
            (await self._catalog.ListVersions(catalog_pb2.ListVersionsRequest())).versions
        )
        stable = [v for v in versions if not is_prerelease(v)]
        facts["versions"] = [
            {"name": v, "prerelease": is_prerelease(v)}
            for v in sorted(versions, key=_vsort, reverse=True)
        ]
        facts["default_version"] = max(stable or versions, key=_vsort) if versions else None
        version = choices.version
        if before(Step.VERSION) and version not in versions:
            fail(Step.VERSION, f"Talos version {version} is not offered here: choose one below")
            return facts
        if version is None or version not in versions:
            return facts
        facts["version"] = version
        facts["docs"] = docs_url(version)
        vkey = version_key(version)

        platforms = [p for p in CLOUD_PLATFORMS if vkey[:2] >= p.min_version]
        facts["platforms"] = platforms
        platform: CloudPlatform | None = None
        if choices.target == Target.CLOUD:
            platform = cloud_platform(choices.platform or "")
            if before(Step.PLATFORM) and (platform is None or platform not in platforms):
                fail(Step.PLATFORM, f"unknown cloud platform {choices.platform!r}")
                return facts
            facts["platform"] = platform

        overlays = []
        if choices.target == Target.SBC:
            if vkey >= _OVERLAYS_SINCE:
                answer = await self._catalog.ListOverlays(
                    catalog_pb2.ListOverlaysRequest(version=version)
                )
                overlays = list(answer.overlays)
            facts["boards"] = overlays
            board = next((o for o in overlays if o.name == choices.board), None)
            if before(Step.BOARD) and board is None:
                fail(Step.BOARD, f"unknown board {choices.board!r} for Talos {version}")
                return facts
            facts["board"] = board

        archs = list(platform.archs) if platform else ["amd64", "arm64"]
        facts["archs"] = archs
        secureboot_reason = await self._secureboot_reason(choices, vkey)
        facts["secureboot_reason"] = secureboot_reason
        if before(Step.ARCH) and choices.target != Target.SBC:
            if choices.arch not in archs:
                fail(Step.ARCH, f"unknown architecture {choices.arch!r}: choose one below")
                return facts
            if choices.secureboot and secureboot_reason is not None:
                fail(Step.ARCH, f"Secure Boot is not available: {secureboot_reason}")
                return facts

        extensions = (
            await self._catalog.ListExtensions(catalog_pb2.ListExtensionsRequest(version=version))
        ).extensions
        names = {e.name for e in extensions}
        needle = choices.search.strip().lower()
        facts["extensions"] = [
            {
                "name": e.name,
                "description": e.description,
                "checked": e.name in (choices.extensions or ()),
            }
            for e in extensions
            if not needle or needle in e.name.lower() or needle in e.description.lower()
        ]
        if before(Step.EXTENSIONS):
            unknown = sorted(set(choices.extensions or ()) - names)
            if unknown:
                fail(
                    Step.EXTENSIONS, f"unknown extensions for Talos {version}: {', '.join(unknown)}"
                )
                return facts

        facts["bootloaders"] = BOOTLOADERS
        facts["bootloader_supported"] = choices.target == Target.METAL and vkey >= _BOOTLOADER_SINCE
        facts["overlay_options_supported"] = choices.target == Target.SBC
        if before(Step.CUSTOMIZE):
            problem = cmdline_problem(choices.cmdline)
            if problem is not None:
                fail(Step.CUSTOMIZE, problem)
            if choices.bootloader not in BOOTLOADERS:
                fail(Step.CUSTOMIZE, f"unknown bootloader {choices.bootloader!r}")
            facts["overlay_options"] = _overlay_options(choices.overlay_options, fail)
        return facts

    async def _secureboot_reason(self, choices: Choices, vkey: tuple[int, int, int]) -> str | None:
        if choices.target != Target.METAL:
            return "Secure Boot images are offered for bare-metal machines only"
        if vkey < _SECUREBOOT_SINCE:
            return "Secure Boot needs Talos 1.5.0 or newer"
        try:
            await self._builder.GetSigningCertificate(builder_pb2.GetSigningCertificateRequest())
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "this service has no Secure Boot signing keys"
            raise
        return None

    async def _final(
        self, request: Request, choices: Choices, facts: dict[str, object]
    ) -> dict[str, object]:
        board = facts.get("board")
        overlay = (board.image, board.name) if isinstance(board, catalog_pb2.Overlay) else None
        body = document(
            choices,
            overlay=overlay,
            overlay_options=facts.get("overlay_options"),
            bootloader_supported=bool(facts.get("bootloader_supported")),
        )
        try:
            created = await self._flavors.CreateFlavor(
                flavor_pb2.CreateFlavorRequest(document=body)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return {
                "step": Step.CUSTOMIZE.value,
                "error": exc.details(),
                "hidden": choices.pairs(upto=Step.CUSTOMIZE),
            }
        version = str(facts["version"])
        host = request.url.netloc
        sb = "-secureboot" if choices.secureboot else ""
        installer = f"{host}/installer{sb}/{created.id}:{version}"
        return {
            "schematic_id": created.id,
            "schematic_yaml": created.canonical_yaml.decode(),
            "links": _asset_links(request, choices, created.id, version, facts),
            "installer": installer,
            "upgrade": f"talosctl upgrade --image {installer}",
        }


def _asset_links(
    request: Request, choices: Choices, flavor_id: str, version: str, facts: dict[str, object]
) -> list[Link]:
    base = f"/image/{flavor_id}/{version}/"
    arch = choices.arch_or_default() or "amd64"
    sb = "-secureboot" if choices.secureboot else ""
    disk_suffix = "raw.zst" if version_key(version) >= (1, 8, 0) else "raw.xz"
    links: list[Link] = []
    if choices.target == Target.METAL:
        links += [
            Link("ISO", f"{base}metal-{arch}{sb}.iso"),
            Link("Disk image", f"{base}metal-{arch}{sb}.{disk_suffix}"),
            Link("Disk image (qcow2)", f"{base}metal-{arch}{sb}.qcow2"),
        ]
        if not choices.secureboot:
            links += [
                Link("Kernel", f"{base}kernel-{arch}"),
                Link("Initramfs", f"{base}initramfs-{arch}.xz"),
            ]
        links.append(Link("UKI", f"{base}metal-{arch}{sb}-uki.efi"))
        pxe = f"{request.url.scheme}://{request.url.netloc}/pxe/{flavor_id}/{version}/metal-{arch}{sb}"
        links.append(Link("PXE boot (iPXE script)", pxe))
    elif choices.target == Target.CLOUD:
        platform = facts["platform"]
        assert isinstance(platform, CloudPlatform)
        if platform.disk_image is not None:
            links.append(Link("Disk image", f"{base}{platform.name}-{arch}.{platform.disk_image}"))
        if "iso" in platform.boot:
            links.append(Link("ISO", f"{base}{platform.name}-{arch}.iso"))
        if "pxe" in platform.boot:
            links += [
                Link("Kernel", f"{base}kernel-{arch}"),
                Link("Initramfs", f"{base}initramfs-{arch}.xz"),
            ]
    else:
        links.append(Link("Disk image", f"{base}metal-arm64.raw.xz"))
    return links


def _overlay_options(text: str, fail: Callable[[Step, str], None]) -> object | None:
    if not text.strip():
        return None
    problem: str | None = None
    value: object = None
    if len(text) > MAX_OPTIONS_CHARS:
        problem = f"the overlay options are longer than {MAX_OPTIONS_CHARS} characters"
    else:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = f"the overlay options are not valid YAML: {exc}"
        if problem is None and not isinstance(value, dict):
            problem = "the overlay options must be a YAML mapping (key: value lines)"
    if problem is not None:
        fail(Step.CUSTOMIZE, problem)
        return None
    return value


def _vsort(version: str) -> tuple[tuple[int, int, int], int, str]:
    return (version_key(version), 0 if is_prerelease(version) else 1, version)


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
