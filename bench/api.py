"""Section 4: the flavor API under load, next to ``GET /healthz`` as the framework's floor.

Three routes at the same concurrency, one after the other, each for a bounded time:
``GET /healthz`` (no work behind it), ``POST /schematics`` with a new flavor per request (parse,
canonicalise, hash, store with fsync) and with the same flavor every time (found, not stored
again). The ratio of interest is the floor's request rate over the route's.

The load generator is ``wrk`` (Debian package ``wrk``) when installed: a Lua script
(:data:`_LUA`) builds each request's body and reports the counts and latency percentiles as
JSON. It is fast enough not to be the limit; an ``httpx.AsyncClient`` is not — on the 2-core
machine this was written on it reached about 300 requests/s against a ``/healthz`` that
serves 5000/s to wrk, at 85 % of a core. Without wrk the section falls back to httpx and says
so in every row (``client``); the client's CPU share is recorded either way.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from bench.rss import tree_cpu
from bench.stack import Service, flavor_document

__all__ = ["LoadResult", "flavor_api"]

_NONCE = "@NONCE@"
_LUA = """\
local pre, post = [==[{pre}]==], [==[{post}]==]
local nonce, unique = "{nonce}", {unique}
local counter = 0
local threads = {{}}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local n = nonce
  if unique then n = nonce .. "-" .. tid .. "-" .. counter end
  return wrk.format("POST", "/schematics", {{["Content-Type"] = "application/yaml"}},
                    pre .. n .. post)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
_HEALTHZ_LUA = """\
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class LoadResult:
    name: str
    client: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50: float
    p99: float
    client_cpu: float  # CPU seconds of the load generator / wall seconds
    server_cpu: float | None = None  # CPU seconds of image-service / wall seconds

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "client": self.client,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50 * 1000, 2),
            "p99_ms": round(self.p99 * 1000, 2),
            "client_cpu_pct": round(self.client_cpu * 100),
            "server_cpu_pct": None if self.server_cpu is None else round(self.server_cpu * 100),
        }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk(
    name: str, url: str, script: str, work: Path, concurrency: int, seconds: float
) -> LoadResult:
    path = work / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    path.write_text(script)
    argv = ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s"]
    cpu = _children_cpu()
    proc = subprocess.run(
        [*argv, "-s", str(path), url], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    wall = report["duration_us"] / 1e6
    return LoadResult(
        name,
        "wrk",
        concurrency,
        report["requests"],
        report["errors"],
        wall,
        report["p50_us"] / 1e6,
        report["p99_us"] / 1e6,
        (_children_cpu() - cpu) / wall,
    )


def _post_script(nonce: str, unique: bool) -> str:
    pre, _, post = flavor_document(_NONCE).partition(_NONCE)
    return _LUA.format(pre=pre, post=post, nonce=nonce, unique=str(unique).lower())


Body = Callable[[int, int], str]  # (worker, request number) -> request body


def _bodies(nonce: str, unique: bool) -> Body:
    def body(worker: int, n: int) -> str:
        return flavor_document(f"{nonce}-{worker}-{n}" if unique else nonce)

    return body


def _httpx(name: str, url: str, body: Body | None, concurrency: int, seconds: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0

    async def worker(client: httpx.AsyncClient, deadline: float, tid: int) -> None:
        nonlocal errors
        n = 0
        while time.monotonic() < deadline:
            n += 1
            start = time.monotonic()
            try:
                if body is None:
                    answer = await client.get(url)
                else:
                    answer = await client.post(url, content=body(tid, n))
                errors += answer.status_code >= 400
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.monotonic() - start)

    async def run() -> tuple[float, float]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            cpu, start = time.process_time(), time.monotonic()
            deadline = start + seconds
            await asyncio.gather(*(worker(client, deadline, i) for i in range(concurrency)))
            wall = time.monotonic() - start
            return wall, (time.process_time() - cpu) / wall

    wall, cpu = asyncio.run(run())
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    n = len(latencies)
    return LoadResult(name, "httpx", concurrency, n, errors, wall, cuts[49], cuts[98], cpu)


def flavor_api(
    service: Service, work: Path, concurrency: int = 32, seconds: float = 8.0
) -> list[LoadResult]:
    """``GET /healthz``, then ``POST /schematics`` with new and with existing flavors."""
    work.mkdir(parents=True, exist_ok=True)
    new, same = uuid.uuid4().hex, uuid.uuid4().hex
    use_wrk = shutil.which("wrk") is not None
    results = []
    for name, route, nonce, unique in (
        ("GET /healthz", "/healthz", None, False),
        ("POST /schematics (new flavor each)", "/schematics", new, True),
        ("POST /schematics (same flavor)", "/schematics", same, False),
    ):
        url = service.url + route
        server_cpu = tree_cpu(service.pid)
        if use_wrk:
            script = _HEALTHZ_LUA if nonce is None else _post_script(nonce, unique)
            result = _wrk(name, url, script, work, concurrency, seconds)
        else:
            body = None if nonce is None else _bodies(nonce, unique)
            result = _httpx(name, url, body, concurrency, seconds)
        server_cpu = (tree_cpu(service.pid) - server_cpu) / result.seconds
        results.append(replace(result, server_cpu=server_cpu))
    return results
