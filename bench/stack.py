"""The system under test: the synthetic Talos release in a local registry, and image-service.

:class:`Stack` builds (or reuses) the test release of the test suite (``tests.release``),
starts a real ``docker-registry`` on loopback (``tests.support.registry``), pushes the release
into it, and starts ``image-service serve`` processes pulling from it exactly as the tests do
(``tests.support.service.release_service``). Every service process is watched by a
:class:`~bench.rss.TreeSampler` from start to stop.

:class:`Service` adds what the benchmark sections need: flavors (always with the four
extensions of the initramfs tests, plus a unique kernel argument so nothing is cached),
``/metrics`` series, streaming a download to a file while its memory peak is recorded, and
the file of a stored asset (the filesystem store keeps it under its digest).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.rss import TreeSampler, WindowPeak
from tests.release import DEFAULT_CACHE, Release, ensure_release, push_release
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

__all__ = ["ARCH", "EXTENSIONS", "VERSION", "Fetched", "Service", "Stack"]

VERSION = "v1.11.3"  # zstd everywhere, UKI profiles, unified installer: the modern path
ARCH = "amd64"
EXTENSIONS = (
    "siderolabs/intel-ucode",
    "siderolabs/amdgpu-firmware",
    "siderolabs/gasket-driver",
    "siderolabs/gvisor",
)


def flavor_document(nonce: str, extensions: tuple[str, ...] = EXTENSIONS) -> str:
    """A flavor with ``extensions`` whose ID is new for every ``nonce``."""
    lines = [
        "customization:",
        f"  extraKernelArgs: [bench.nonce={nonce}]",
        "  systemExtensions:",
        "    officialExtensions:",
        *(f"      - {name}" for name in extensions),
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Fetched:
    """One timed request: status, body (in ``dest``), wall time and memory peaks."""

    status: int
    size: int
    seconds: float
    peak: WindowPeak
    etag: str
    text: str  # the body of an error answer
    dest: Path


class Service:
    def __init__(self, proc: ServiceProcess, root: Path, label: str) -> None:
        self.proc = proc
        self.root = root
        self.data = root / "data"
        self.url = proc.url
        assert proc.proc is not None
        self.pid = proc.proc.pid
        self.sampler = TreeSampler(self.pid, label).start()
        self.client = httpx.Client(base_url=self.url, timeout=httpx.Timeout(900, connect=10))
        self.stopped = False

    def secureboot_keys(self) -> tuple[Path, Path] | None:
        """``(key, cert)`` the service signs Secure Boot assets with."""
        args = self.proc.args
        if "--secureboot-signing-key" not in args:
            return None
        key = args[args.index("--secureboot-signing-key") + 1]
        cert = args[args.index("--secureboot-signing-cert") + 1]
        return Path(key), Path(cert)

    def flavor(self, extensions: tuple[str, ...] = EXTENSIONS) -> str:
        """A new flavor ID (never requested before, so every asset of it is cold)."""
        answer = self.client.post(
            "/schematics", content=flavor_document(uuid.uuid4().hex, extensions)
        )
        answer.raise_for_status()
        return str(answer.json()["id"])

    def metrics(self, kind: str) -> dict[str, float]:
        """Every series of ``/metrics`` labelled ``kind="<kind>"`` (histogram buckets left
        out), by metric name: ``image_factory_assets_built_total`` and so on."""
        out: dict[str, float] = {}
        for line in self.client.get("/metrics").text.splitlines():
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            if f'kind="{kind}"' in labels and not name.endswith("_bucket"):
                out[name] = out.get(name, 0.0) + float(value)
        return out

    def fetch(self, url: str, dest: Path, headers: dict[str, str] | None = None) -> Fetched:
        """GET ``url`` (relative to the service) into ``dest``, timing it and its memory."""
        start = time.monotonic()
        size = 0
        text = ""
        with self.client.stream("GET", url, headers=headers) as answer, dest.open("wb") as out:
            for chunk in answer.iter_raw(1 << 20):
                out.write(chunk)
                size += len(chunk)
        seconds = time.monotonic() - start
        if answer.status_code != 200:
            text = dest.read_text(errors="replace").strip()
        return Fetched(
            status=answer.status_code,
            size=size,
            seconds=seconds,
            peak=self.sampler.window(start, start + seconds),
            etag=answer.headers.get("etag", "").strip('"'),
            text=text,
            dest=dest,
        )

    def asset_file(self, digest: str) -> Path:
        """The stored file of an asset (the filesystem store names it by its digest)."""
        path = self.data / "store" / "assets" / "blobs" / "sha256" / digest.removeprefix("sha256:")
        if not path.is_file():
            raise RuntimeError(f"asset {digest} is not in {path.parent}")
        return path

    def stop(self) -> None:
        """Stop the process; its sampler keeps the memory record."""
        if self.stopped:
            return
        self.stopped = True
        self.client.close()
        self.sampler.stop()
        rc = self.proc.stop()
        if rc != 0:
            raise RuntimeError(f"image-service exited with {rc}:\n{self.proc.log()[-4000:]}")


class Stack:
    """The test release in a local registry; ``service()`` starts image-service processes."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.release: Release | None = None
        self.registry: LocalRegistry | None = None
        self.services: list[Service] = []  # every service started, stopped ones included
        self.setup_seconds: dict[str, float] = {}

    def start(self) -> Stack:
        cache = os.environ.get("IMAGE_SERVICE_TEST_RELEASE_CACHE")
        start = time.monotonic()
        self.release = ensure_release(Path(cache) if cache else DEFAULT_CACHE, log=True)
        self.setup_seconds["release"] = time.monotonic() - start
        self.registry = LocalRegistry(self.work / "registry")
        self.registry.start()
        start = time.monotonic()
        push_release(self.release, self.registry.host)
        self.setup_seconds["push"] = time.monotonic() - start
        return self

    def service(
        self, label: str, *, seed_from: Service | None = None, secureboot: bool = True
    ) -> Service:
        """Start ``image-service serve`` with a new data dir. With ``seed_from``, the input
        blob cache is hard-linked from that service first: its assets are cold, its inputs
        warm (nothing is pulled from the registry again)."""
        assert self.registry is not None
        root = self.work / label
        if seed_from is not None:
            shutil.copytree(
                seed_from.data / "cache" / "blobs" / "sha256",
                root / "data" / "cache" / "blobs" / "sha256",
                copy_function=os.link,
            )
        start = time.monotonic()
        proc = release_service(root, self.registry.host, secureboot=secureboot)
        self.setup_seconds[f"start {label}"] = time.monotonic() - start
        service = Service(proc, root, label)
        self.services.append(service)
        return service

    def stop(self) -> None:
        for service in self.services:
            service.stop()
        if self.registry is not None:
            self.registry.stop()
