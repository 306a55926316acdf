"""The composition root: build every part from the settings and run it.

``serve`` runs the embedded default — the gRPC services on loopback ports and all frontends on
one HTTP listener — in one process. ``run_component`` runs one part alone (a gRPC service on
``--grpc-listen``, or a frontend on ``--listen`` talking to its peers at ``--*-address``), which
is how ``compose.yaml`` scales the parts out. In both cases this module is the one place that
owns signals: SIGTERM/SIGINT stop the HTTP listener first (in-flight requests finish), then the
gRPC servers with a grace period, then storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import grpc.aio
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from frontends.common.errors import body_too_large
from frontends.common.web import (
    BodyTooLarge,
    RequestContextMiddleware,
    healthz_route,
    text_response,
)
from frontends.http.app import HttpFrontend
from frontends.pxe.app import PxeFrontend
from frontends.registry.app import RegistryFrontend
from image_service.oci import BlobCache, RegistryClient
from image_service.proto import builder_pb2_grpc, catalog_pb2_grpc, flavor_pb2_grpc
from image_service.rpc import open_channel, start_server
from image_service.settings import Settings, StorageKind
from image_service.storage import BlobStore
from image_service.storage.filesystem import FilesystemStore
from image_service.versions import Version
from services.builder.assets import Assembler
from services.builder.inputs.catalogs import Peers
from services.builder.metrics import BuilderMetrics
from services.builder.pipeline import Pipeline
from services.builder.registry_images import InstallerImages
from services.builder.scheduler import Scheduler
from services.builder.service import BuilderServicer
from services.builder.talos.secureboot import PcrSigner, SecureBootKeyError, SecureBootKeys
from services.builder.tools import BUILDER_TOOLS, MissingTools, check_tools
from services.catalog.catalog import Catalog
from services.catalog.service import CatalogServicer
from services.flavor.service import FlavorServicer
from services.flavor.storage import FlavorStore

__all__ = ["Component", "build_store", "build_web_app", "run_component", "serve"]

log = logging.getLogger(__name__)

GRACE_SECONDS = 10.0


class Component(StrEnum):
    FLAVOR = "flavor"
    CATALOG = "catalog"
    BUILDER = "builder"
    HTTP = "http"
    PXE = "pxe"
    REGISTRY = "registry"


def build_store(settings: Settings) -> BlobStore:
    if settings.storage is StorageKind.REGISTRY:
        from image_service.storage.registry import RegistryStore  # noqa: PLC0415 - optional part

        return RegistryStore(
            settings.storage_registry,
            prefix=settings.storage_repository,
            insecure=settings.insecure_storage_registry,
        )
    return FilesystemStore(settings.data_dir / "store")


async def _router_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return text_response(404, "404 page not found")
    if exc.status_code == 405:
        return text_response(405, "Method Not Allowed", dict(exc.headers or {}))
    return text_response(exc.status_code, exc.detail)


def build_web_app(settings: Settings, routes: list[BaseRoute]) -> Starlette:
    """One Starlette app holding the given frontends' routes, with the shared middleware."""
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "HEAD", "OPTIONS", "POST"],
                allow_headers=["Cache-Control", "Content-Type"],
                expose_headers=["Content-Disposition", "Content-Length", "Content-Type"],
            ),
        ],
        exception_handlers={HTTPException: _router_error, BodyTooLarge: body_too_large},
    )


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: this module owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class _Running:
    """What one process runs; stopped in reverse dependency order."""

    grpc_servers: list[grpc.aio.Server] = field(default_factory=list)
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    stores: list[BlobStore] = field(default_factory=list)
    clients: list[RegistryClient] = field(default_factory=list)
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    http: _Uvicorn | None = None

    async def stop(self) -> None:
        for server in self.grpc_servers:
            await server.stop(GRACE_SECONDS)
        for channel in self.channels:
            await channel.close(None)
        for store in self.stores:
            await store.aclose()
        for client in self.clients:
            await client.aclose()


def _bind(settings: Settings) -> socket.socket:
    """Bind the HTTP listener here, so a busy port is a clear error, not uvicorn's exit."""
    host = settings.listen_host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only for TCP-proto
    # listeners; without it, keep-alive responses stall on the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, settings.listen_port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for HTTP on {settings.listen}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def _uvicorn(settings: Settings, app: Starlette) -> _Uvicorn:
    config = uvicorn.Config(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        log_config=None,
        server_header=False,
        access_log=False,
        timeout_graceful_shutdown=int(GRACE_SECONDS),
    )
    return _Uvicorn(config)


async def _start_flavor(settings: Settings, address: str, running: _Running) -> int:
    store = build_store(settings)
    running.stores.append(store)
    servicer = FlavorServicer(FlavorStore(store), max_document_bytes=settings.max_request_bytes)
    server, port = await start_server(
        address, [lambda s: flavor_pb2_grpc.add_FlavorServiceServicer_to_server(servicer, s)]
    )
    running.grpc_servers.append(server)
    log.info("flavor service listening on %s", address.rsplit(":", 1)[0] + f":{port}")
    return port


def release_client(settings: Settings) -> RegistryClient:
    """The client for the registry the Talos release images come from."""
    return RegistryClient(
        settings.image_registry,
        insecure=settings.insecure_image_registry,
        cache=BlobCache(settings.data_dir / "cache" / "blobs"),
    )


async def _start_catalog(settings: Settings, address: str, running: _Running) -> int:
    client = release_client(settings)
    running.clients.append(client)
    catalog = Catalog(
        client,
        minimum=Version.parse(settings.min_talos_version),
        refresh_seconds=settings.catalog_refresh_seconds,
    )
    servicer = CatalogServicer(catalog)
    server, port = await start_server(
        address, [lambda s: catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, s)]
    )
    running.grpc_servers.append(server)
    log.info("catalog service listening on %s", address.rsplit(":", 1)[0] + f":{port}")
    return port


@dataclass(frozen=True)
class _Signing:
    keys: SecureBootKeys
    pcr: PcrSigner

    @property
    def identity(self) -> str:
        cert = hashlib.sha256(self.keys.signing_cert_der()).hexdigest()
        return f"cert:{cert} pcr:{self.pcr.fingerprint}"


def _check_builder_tools() -> None:
    """Refuse to start a builder that would fail later for want of a tool (names packages)."""
    try:
        check_tools(BUILDER_TOOLS)
    except MissingTools as exc:
        raise OSError(str(exc)) from exc


def _load_signing(settings: Settings) -> _Signing | None:
    """Load and check the Secure Boot keys before anything listens (errors name the file)."""
    key, cert, pcr = (
        settings.secureboot_signing_key,
        settings.secureboot_signing_cert,
        settings.secureboot_pcr_key,
    )
    if key is None or cert is None or pcr is None:
        return None
    try:
        return _Signing(SecureBootKeys.load(key, cert), PcrSigner.load(pcr))
    except SecureBootKeyError as exc:
        raise OSError(f"Secure Boot keys: {exc}") from exc


async def _start_builder(
    settings: Settings,
    address: str,
    running: _Running,
    *,
    flavor_address: str,
    catalog_address: str,
    signing: _Signing | None,
) -> int:
    store = build_store(settings)
    client = release_client(settings)
    flavor = open_channel(flavor_address)
    catalog = open_channel(catalog_address)
    running.stores.append(store)
    running.clients.append(client)
    running.channels += [flavor, catalog]
    metrics = BuilderMetrics(running.metrics)
    scheduler = Scheduler(
        store,
        settings.data_dir / "work",
        metrics,
        max_concurrency=settings.build_concurrency,
        max_queue=settings.build_queue,
        timeout=settings.build_timeout_seconds,
    )
    peers = Peers(flavor, catalog)
    pipeline = Pipeline(
        peers=peers,
        release=client,
        scheduler=scheduler,
        assembler=Assembler(
            client,
            keys=signing.keys if signing else None,
            pcr=signing.pcr if signing else None,
        ),
        external_url=settings.base_url,
        signing_identity=signing.identity if signing else None,
    )
    cert = signing.keys.signing_cert_pem() if signing else None
    images = InstallerImages(
        pipeline=pipeline,
        peers=peers,
        catalog=catalog,
        scheduler=scheduler,
        store=store,
        metrics=metrics,
        signing_identity=signing.identity if signing else None,
    )
    servicer = BuilderServicer(pipeline, store, metrics, signing_cert=cert, installer_images=images)
    server, port = await start_server(
        address, [lambda s: builder_pb2_grpc.add_BuilderServiceServicer_to_server(servicer, s)]
    )
    running.grpc_servers.append(server)
    log.info("builder service listening on %s", address.rsplit(":", 1)[0] + f":{port}")
    return port


def _http_routes(
    settings: Settings,
    running: _Running,
    *,
    flavor_address: str,
    catalog_address: str,
    builder_address: str,
) -> list[BaseRoute]:
    flavor = open_channel(flavor_address)
    catalog = open_channel(catalog_address)
    builder = open_channel(builder_address)
    running.channels += [flavor, catalog, builder]
    frontend = HttpFrontend(
        flavor=flavor,
        catalog=catalog,
        builder=builder,
        metrics=running.metrics,
        max_request_bytes=settings.max_request_bytes,
    )
    return frontend.routes()


def _builder_frontend_routes(
    settings: Settings, running: _Running, component: Component, builder_address: str
) -> list[BaseRoute]:
    """The routes of the PXE or registry frontend, which only talk to the builder."""
    builder = open_channel(builder_address)
    running.channels.append(builder)
    if component is Component.PXE:
        return PxeFrontend(builder, settings.pxe_base_url).routes()
    return RegistryFrontend(builder).routes()


def _alone(routes: list[BaseRoute]) -> list[BaseRoute]:
    """A frontend run alone answers /healthz itself (the HTTP frontend already has it)."""
    return [healthz_route(), *routes]


async def _run(settings: Settings, setup: Callable[[_Running], Awaitable[None]]) -> None:
    running = _Running()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await setup(running)
        if running.http is not None:
            http = running.http
            sock = _bind(settings)
            http_task = asyncio.create_task(http.serve(sockets=[sock]))
            stop_task = asyncio.create_task(stop.wait())
            await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            http.should_exit = True
            await http_task
            stop_task.cancel()
            sock.close()
        else:
            await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await running.stop()


async def serve(settings: Settings) -> None:
    """The embedded default: everything in this process, one HTTP port."""

    signing = _load_signing(settings)
    _check_builder_tools()

    async def setup(running: _Running) -> None:
        flavor = f"127.0.0.1:{await _start_flavor(settings, '127.0.0.1:0', running)}"
        catalog = f"127.0.0.1:{await _start_catalog(settings, '127.0.0.1:0', running)}"
        builder_port = await _start_builder(
            settings,
            "127.0.0.1:0",
            running,
            flavor_address=flavor,
            catalog_address=catalog,
            signing=signing,
        )
        builder = f"127.0.0.1:{builder_port}"
        routes = _http_routes(
            settings,
            running,
            flavor_address=flavor,
            catalog_address=catalog,
            builder_address=builder,
        )
        for frontend in (Component.PXE, Component.REGISTRY):
            routes += _builder_frontend_routes(settings, running, frontend, builder)
        running.http = _uvicorn(settings, build_web_app(settings, routes))
        log.info("serving on http://%s (external URL %s)", settings.listen, settings.base_url)

    await _run(settings, setup)


async def run_component(component: Component, settings: Settings) -> None:
    """Run one part alone, addressed by flags."""
    signing = None
    if component is Component.BUILDER:
        signing = _load_signing(settings)
        _check_builder_tools()

    async def setup(running: _Running) -> None:
        if component is Component.FLAVOR:
            await _start_flavor(settings, settings.grpc_listen, running)
        elif component is Component.CATALOG:
            await _start_catalog(settings, settings.grpc_listen, running)
        elif component is Component.BUILDER:
            await _start_builder(
                settings,
                settings.grpc_listen,
                running,
                flavor_address=settings.flavor_address,
                catalog_address=settings.catalog_address,
                signing=signing,
            )
        elif component is Component.HTTP:
            routes = _http_routes(
                settings,
                running,
                flavor_address=settings.flavor_address,
                catalog_address=settings.catalog_address,
                builder_address=settings.builder_address,
            )
            running.http = _uvicorn(settings, build_web_app(settings, routes))
        elif component in (Component.PXE, Component.REGISTRY):
            routes = _alone(
                _builder_frontend_routes(settings, running, component, settings.builder_address)
            )
            running.http = _uvicorn(settings, build_web_app(settings, routes))

    await _run(settings, setup)
