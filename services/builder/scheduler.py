"""Build each asset once: cache lookup, single flight, bounded queue and concurrency, timeout.

``Scheduler.get_or_build(key, assemble)`` answers from the store when an asset with that build
key is cached (the key is a tag in the ``assets`` namespace). Otherwise it starts one build task
per key; later callers for the same key wait on the same task. The task is detached from the
callers (``asyncio.shield``), so a client that disconnects does not cancel a build others wait
for. Builds wait for a semaphore slot; when more than ``max_queue`` builds are already waiting,
new ones are refused with ``BuildOverloaded`` (503 with Retry-After). Each build runs in a
private work directory that is always removed, has a timeout, and commits its output to the
store atomically (``put_file`` + tag) only when it succeeded, so failures are never cached.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from image_service.storage import BlobInfo, BlobStore
from services.builder.errors import BuildFailed, BuildOverloaded
from services.builder.metrics import BuilderMetrics

__all__ = ["ASSET_MEDIA_TYPE", "ASSET_NAMESPACE", "Built", "Scheduler"]

log = logging.getLogger(__name__)

ASSET_NAMESPACE = "assets"
ASSET_MEDIA_TYPE = "application/data"

Assemble = Callable[[Path], Awaitable[Path]]


@dataclass(frozen=True)
class Built:
    info: BlobInfo
    cached: bool


class Scheduler:
    def __init__(
        self,
        store: BlobStore,
        work_root: Path,
        metrics: BuilderMetrics,
        *,
        max_concurrency: int = 2,
        max_queue: int = 32,
        timeout: float = 1200.0,
    ) -> None:
        self._store = store
        self._work_root = work_root
        self._metrics = metrics
        self._slots = asyncio.Semaphore(max_concurrency)
        self._max_queue = max_queue
        self._timeout = timeout
        self._waiting = 0
        self._tasks: dict[str, asyncio.Task[BlobInfo]] = {}

    async def cached(self, key: str) -> BlobInfo | None:
        digest = await self._store.resolve_tag(ASSET_NAMESPACE, key)
        if digest is None:
            return None
        return await self._store.stat(ASSET_NAMESPACE, digest)

    async def get_or_build(self, key: str, kind: str, assemble: Assemble) -> Built:
        task = self._tasks.get(key)
        if task is None:
            hit = await self.cached(key)
            if hit is not None:
                self._metrics.cache_hits.labels(kind).inc()
                return Built(hit, cached=True)
            task = self._tasks.get(key)  # another caller may have started it meanwhile
        if task is None:
            if self._waiting >= self._max_queue:
                self._metrics.rejected.labels(kind).inc()
                log.warning("refusing a %s build: %d builds are queued", kind, self._waiting)
                raise BuildOverloaded()
            task = asyncio.create_task(self._run(key, kind, assemble), name=f"build {key[:12]}")
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        else:
            self._metrics.joined.labels(kind).inc()
        info = await asyncio.shield(task)
        return Built(info, cached=False)

    def _forget(self, key: str, task: asyncio.Task[BlobInfo]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:
            log.debug("build %s failed: %s", key[:12], task.exception())

    async def _run(self, key: str, kind: str, assemble: Assemble) -> BlobInfo:
        queued = time.monotonic()
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._metrics.queue_seconds.labels(kind).observe(time.monotonic() - queued)
        started = time.monotonic()
        self._metrics.builds_started.labels(kind).inc()
        try:
            self._work_root.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self._work_root))
            try:
                try:
                    output = await asyncio.wait_for(assemble(work), self._timeout)
                except TimeoutError:
                    raise BuildFailed(
                        f"building {kind} took longer than {self._timeout:.0f} s"
                    ) from None
                info = await self._store.put_file(
                    ASSET_NAMESPACE, output, media_type=ASSET_MEDIA_TYPE, tag=key
                )
            finally:
                await asyncio.to_thread(shutil.rmtree, work, True)
        except BaseException:
            self._metrics.builds_failed.labels(kind).inc()
            raise
        finally:
            self._slots.release()
        elapsed = time.monotonic() - started
        self._metrics.build_seconds.labels(kind).observe(elapsed)
        self._metrics.built_bytes.labels(kind).inc(info.size)
        log.info("built %s %s (%d bytes) in %.2f s", kind, info.digest, info.size, elapsed)
        return info
