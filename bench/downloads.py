"""Section 2: cache-hit downloads through ``/image``, next to nginx and a local read.

The asset: the first of :data:`CANDIDATES` the service builds that is at least 256 MiB; if
none is that big yet, the biggest one it builds, marked as such in the results. It is built
once (untimed) before anything is measured, so every download is a cache hit.

One measurement runs ``clients`` concurrent downloaders for a bounded time. Each downloader is
a thread with its own kept-alive connection that GETs the URL over and over until it has
received :data:`TARGET` bytes — one whole download of a big asset, several of a small one
(per-request overhead counts then, as it does for a real client) — or until the deadline,
mid-body if need be. Throughput is all bytes over the wall time; the median time to the first
byte of each answer is recorded too.

The downloader is a minimal HTTP/1.1 client (sized bodies, ``recv_into`` one reused buffer),
not httpx: on the 2-core machine the benchmark was written on, one httpx client tops out near
600 MiB/s at 100 % of a core, so nginx would have measured the client (this client: ~1.7 GiB/s
from the same nginx, curl ~1.4 GiB/s). The same downloaders fetch the same file from nginx
(:mod:`bench.nginx`, root = the service's asset store), and the local
baseline reads the stored file with ``clients`` threads (page cache warm). The client's CPU
time over the wall time is recorded: near 100 % means one core of this machine was busy
being the client, which caps what any server can show.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from bench.nginx import Nginx
from bench.rss import MiB, tree_cpu
from bench.stack import ARCH, VERSION, Service

__all__ = ["CANDIDATES", "TARGET", "DownloadResult", "downloads"]

TARGET = 256 * MiB
CANDIDATES = (
    f"metal-{ARCH}.raw",
    f"metal-{ARCH}.qcow2",
    f"metal-{ARCH}.iso",
    f"installer-{ARCH}.tar",
    f"metal-{ARCH}-uki.efi",
    f"kernel-{ARCH}",
)
_DEADLINE_S = 20.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Throughput:
    source: str
    clients: int
    bytes: int
    seconds: float
    requests: int
    client_cpu: float  # CPU seconds of this process / wall seconds
    first_byte: float | None = None  # median seconds from request sent to headers read
    server_cpu: float | None = None  # CPU seconds of the server's processes / wall seconds
    server_peak_mib: float | None = None  # image-service's RSS peak meanwhile

    @property
    def mib_s(self) -> float:
        return self.bytes / MiB / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "clients": self.clients,
            "mib_per_s": round(self.mib_s, 1),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "first_byte_ms": None if self.first_byte is None else round(self.first_byte * 1000, 1),
            "client_cpu_pct": round(self.client_cpu * 100),
            "server_cpu_pct": None if self.server_cpu is None else round(self.server_cpu * 100),
            "server_peak_rss_mib": self.server_peak_mib,
        }


@dataclass
class DownloadResult:
    asset: str
    size: int
    build_seconds: float  # its cold build (not a measurement of this section)
    big_enough: bool
    measurements: list[Throughput]
    skipped: list[str]  # candidates the service does not build (status)

    def get(self, source: str, clients: int) -> Throughput:
        return next(m for m in self.measurements if m.source == source and m.clients == clients)

    def ratio(self, source: str, clients: int) -> float:
        """How many times faster ``source`` delivers than the service."""
        return self.get(source, clients).mib_s / self.get("image-service", clients).mib_s

    def to_json(self) -> dict[str, object]:
        return {
            "asset": self.asset,
            "asset_mib": round(self.size / MiB, 1),
            "asset_build_seconds": round(self.build_seconds, 2),
            "at_least_256_mib": self.big_enough,
            "not_available": self.skipped,
            "measurements": [m.to_json() for m in self.measurements],
            "ratios": {
                f"{source} / image-service, {n} client{'s' if n > 1 else ''}": round(
                    self.ratio(source, n), 2
                )
                for source in ("nginx", "local read")
                for n in sorted({m.clients for m in self.measurements})
            },
        }


def _download(host: str, port: int, path: str, deadline: float) -> tuple[int, list[float]]:
    """GET ``path`` over one kept-alive connection until TARGET bytes arrived or the deadline
    passed (then mid-body): the bytes, and each request's time to its headers. ``recv_into``
    a reused buffer releases the GIL, so threads of this client run in parallel."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    received = 0
    first_bytes: list[float] = []
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    with socket.create_connection((host, port), timeout=60) as sock:
        while received < TARGET and time.monotonic() < deadline:
            sent = time.monotonic()
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError(f"GET {path}: connection closed in the headers")
                head += chunk
            first_bytes.append(time.monotonic() - sent)
            head, _, body = head.partition(b"\r\n\r\n")
            status, length = _parse_head(head)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status}")
            received += len(body)
            left = length - len(body)
            while left > 0:
                n = sock.recv_into(view[: min(left, _CHUNK)])
                if not n:
                    raise RuntimeError(f"GET {path}: connection closed with {left} bytes left")
                received += n
                left -= n
                if time.monotonic() > deadline:
                    return received, first_bytes
    return received, first_bytes


def _parse_head(head: bytes) -> tuple[int, int]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return status, int(value)
    raise RuntimeError(f"no Content-Length in {lines[0]!r}: the client reads sized bodies only")


def _http(source: str, url: str, clients: int, server_pid: int) -> Throughput:
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    results: list[tuple[int, list[float]]] = [(0, [])] * clients
    errors: list[BaseException] = []

    def client(i: int, deadline: float) -> None:
        try:
            results[i] = _download(host, port, parsed.path, deadline)
        except BaseException as exc:
            errors.append(exc)

    server_cpu = tree_cpu(server_pid)
    cpu, start = time.process_time(), time.monotonic()
    threads = [
        threading.Thread(target=client, args=(i, start + _DEADLINE_S)) for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    client_cpu = time.process_time() - cpu
    server_cpu = tree_cpu(server_pid) - server_cpu
    if errors:
        raise errors[0]
    first_bytes = [t for r in results for t in r[1]]
    return Throughput(
        source,
        clients,
        sum(r[0] for r in results),
        seconds,
        len(first_bytes),
        client_cpu / seconds,
        first_byte=statistics.median(first_bytes),
        server_cpu=server_cpu / seconds,
    )


def _local(path: Path, clients: int) -> Throughput:
    totals = [0] * clients
    counts = [0] * clients

    def reader(i: int) -> None:
        buf = bytearray(_CHUNK)
        while totals[i] < TARGET:
            counts[i] += 1
            fd = os.open(path, os.O_RDONLY)
            try:
                while n := os.readv(fd, [buf]):
                    totals[i] += n
            finally:
                os.close(fd)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(clients)]
    cpu, start = time.process_time(), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    return Throughput(
        "local read",
        clients,
        sum(totals),
        seconds,
        sum(counts),
        (time.process_time() - cpu) / seconds,
    )


@dataclass(frozen=True)
class _Asset:
    url: str
    digest: str
    size: int
    build_seconds: float  # the cold HEAD that built it


def _choose(service: Service) -> tuple[_Asset, list[str]]:
    """Build the candidates (a HEAD builds too) and pick one; also the ones not available."""
    flavor = service.flavor()
    built, skipped = [], []
    for path in CANDIDATES:
        url = f"/image/{flavor}/{VERSION}/{path}"
        start = time.monotonic()
        answer = service.client.head(url)
        if answer.status_code != 200:
            skipped.append(f"{path}: {answer.status_code}")
            continue
        size = int(answer.headers["content-length"])
        digest = answer.headers["etag"].strip('"')
        built.append(_Asset(url, digest, size, time.monotonic() - start))
        if size >= TARGET:
            break
    if not built:
        raise RuntimeError(f"the service builds none of {', '.join(CANDIDATES)}")
    big = [b for b in built if b.size >= TARGET]
    return (big[0] if big else max(built, key=lambda b: b.size)), skipped


def downloads(service: Service, work: Path, client_counts: tuple[int, ...]) -> DownloadResult:
    asset, skipped = _choose(service)
    stored = service.asset_file(asset.digest)
    nginx = Nginx(stored.parent, work / "nginx").start()
    try:
        measurements = []
        for clients in client_counts:
            start = time.monotonic()
            served = _http("image-service", service.url + asset.url, clients, service.pid)
            peak = service.sampler.window(start, time.monotonic()).root_rss / MiB
            measurements.append(replace(served, server_peak_mib=round(peak, 1)))
            measurements.append(_http("nginx", f"{nginx.url}/{stored.name}", clients, nginx.pid))
            measurements.append(_local(stored, clients))
    finally:
        nginx.stop()
    return DownloadResult(
        asset=asset.url.rpartition("/")[2],
        size=asset.size,
        build_seconds=asset.build_seconds,
        big_enough=asset.size >= TARGET,
        measurements=measurements,
        skipped=skipped,
    )
