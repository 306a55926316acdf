"""Section 3: build dedup under load.

:func:`dedup` times one cold request for an asset (median of three), then sends ``clients``
identical cold requests for the same asset of another new flavor at once (one
``httpx.AsyncClient``, one connection per request): the builds counter
(``image_factory_assets_built_total``) must go up by one, not fifty, and the wall time should
stay close to one build (every answer still carries the asset's bytes). The time until the
first answer's headers shows when the build was done; the rest is answering fifty clients.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx

from bench.stack import ARCH, VERSION, Service

__all__ = ["DedupResult", "dedup"]

_SINGLES = 3  # one cold request, timed this many times (new flavor each): the median counts


@dataclass(frozen=True)
class DedupResult:
    path: str
    clients: int
    single_seconds: float  # median of single cold requests
    seconds: float  # all answers complete
    first_headers_seconds: float
    builds: float  # builds counted for the ``clients`` requests
    joined: float  # requests that joined the running build
    cached: float  # requests that came after it and were answered from the cache
    build_seconds: float  # how long the build itself took, as the service measured it
    statuses: dict[int, int]
    distinct_bodies: int

    @property
    def ratio(self) -> float:
        return self.seconds / self.single_seconds

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "clients": self.clients,
            "single_build_seconds": round(self.single_seconds, 3),
            "all_answered_seconds": round(self.seconds, 3),
            "first_answer_headers_seconds": round(self.first_headers_seconds, 3),
            "builds_performed": self.builds,
            "requests_joined": self.joined,
            "requests_from_cache": self.cached,
            "service_build_seconds": round(self.build_seconds, 3),
            "statuses": self.statuses,
            "distinct_etags": self.distinct_bodies,
            "ratio": round(self.ratio, 2),
        }


def dedup(service: Service, clients: int = 50) -> DedupResult:
    path = f"initramfs-{ARCH}.xz"

    def url(flavor: str) -> str:
        return f"{service.url}/image/{flavor}/{VERSION}/{path}"

    singles = []
    for _ in range(_SINGLES):
        single = url(service.flavor())
        start = time.monotonic()
        service.client.get(single).raise_for_status()
        singles.append(time.monotonic() - start)

    target = url(service.flavor())
    before = service.metrics("initramfs")

    async def one(client: httpx.AsyncClient, t0: float) -> tuple[int, str, float]:
        async with client.stream("GET", target) as answer:
            headers_at = time.monotonic() - t0
            await answer.aread()
            return answer.status_code, answer.headers.get("etag", ""), headers_at

    async def all_at_once() -> list[tuple[int, str, float]]:
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:
            t0 = time.monotonic()
            return await asyncio.gather(*(one(client, t0) for _ in range(clients)))

    start = time.monotonic()
    answers = asyncio.run(all_at_once())
    seconds = time.monotonic() - start
    after = service.metrics("initramfs")
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    statuses: dict[int, int] = {}
    for status, _, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    return DedupResult(
        path=path,
        clients=clients,
        single_seconds=statistics.median(singles),
        seconds=seconds,
        first_headers_seconds=min(a[2] for a in answers),
        builds=delta.get("image_factory_assets_built_total", 0.0),
        joined=delta.get("image_service_assets_build_joined_total", 0.0),
        cached=delta.get("image_factory_assets_delivered_cached_total", 0.0),
        build_seconds=delta.get("image_factory_assets_build_latency_seconds_sum", 0.0),
        statuses=statuses,
        distinct_bodies=len({a[1] for a in answers}),
    )
