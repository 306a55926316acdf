"""Single flight, bounded queue, timeouts, detached builds and no cached failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from image_service.storage.filesystem import FilesystemStore
from services.builder.errors import BuildFailed, BuildOverloaded
from services.builder.metrics import BuilderMetrics
from services.builder.scheduler import Scheduler

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make(tmp_path: Path, **kwargs: float) -> tuple[Scheduler, CollectorRegistry]:
    registry = CollectorRegistry()
    scheduler = Scheduler(
        FilesystemStore(tmp_path / "store"),
        tmp_path / "work",
        BuilderMetrics(registry),
        **kwargs,  # type: ignore[arg-type]
    )
    return scheduler, registry


def value(registry: CollectorRegistry, name: str, kind: str = "test") -> float:
    return registry.get_sample_value(name, {"kind": kind}) or 0.0


async def test_concurrent_requests_build_once(tmp_path: Path) -> None:
    scheduler, registry = make(tmp_path)
    calls = 0
    release = asyncio.Event()

    async def assemble(work: Path) -> Path:
        nonlocal calls
        calls += 1
        await release.wait()
        out = work / "asset"
        out.write_bytes(b"the asset")
        return out

    waiters = [
        asyncio.create_task(scheduler.get_or_build("k" * 64, "test", assemble)) for _ in range(20)
    ]
    await asyncio.sleep(0.05)
    release.set()
    results = await asyncio.gather(*waiters)
    assert calls == 1
    assert len({r.info for r in results}) == 1
    assert value(registry, "image_factory_assets_built_total") == 1
    assert value(registry, "image_service_assets_build_joined_total") == 19
    again = await scheduler.get_or_build("k" * 64, "test", assemble)
    assert again.cached and again.info == results[0].info
    assert calls == 1
    assert list((tmp_path / "work").iterdir()) == []


async def test_failures_are_not_cached(tmp_path: Path) -> None:
    scheduler, registry = make(tmp_path)
    attempts = 0

    async def assemble(work: Path) -> Path:
        nonlocal attempts
        attempts += 1
        (work / "partial").write_bytes(b"half")
        if attempts == 1:
            raise BuildFailed("tool exploded")
        out = work / "asset"
        out.write_bytes(b"ok")
        return out

    with pytest.raises(BuildFailed):
        await scheduler.get_or_build("f" * 64, "test", assemble)
    assert await scheduler.cached("f" * 64) is None
    assert list((tmp_path / "work").iterdir()) == []
    built = await scheduler.get_or_build("f" * 64, "test", assemble)
    assert not built.cached
    assert attempts == 2
    assert value(registry, "image_service_assets_build_failures_total") == 1


async def test_disconnected_waiter_does_not_cancel_the_build(tmp_path: Path) -> None:
    scheduler, _ = make(tmp_path)
    release = asyncio.Event()

    async def assemble(work: Path) -> Path:
        await release.wait()
        out = work / "asset"
        out.write_bytes(b"finished")
        return out

    first = asyncio.create_task(scheduler.get_or_build("d" * 64, "test", assemble))
    second = asyncio.create_task(scheduler.get_or_build("d" * 64, "test", assemble))
    await asyncio.sleep(0.05)
    first.cancel()
    release.set()
    built = await second
    assert not built.cached
    assert first.cancelled()
    assert await scheduler.cached("d" * 64) == built.info


async def test_full_queue_is_refused(tmp_path: Path) -> None:
    scheduler, registry = make(tmp_path, max_concurrency=1, max_queue=1)
    release = asyncio.Event()

    async def assemble(work: Path) -> Path:
        await release.wait()
        out = work / "asset"
        out.write_bytes(work.name.encode())
        return out

    running = asyncio.create_task(scheduler.get_or_build("1" * 64, "test", assemble))
    await asyncio.sleep(0.02)
    queued = asyncio.create_task(scheduler.get_or_build("2" * 64, "test", assemble))
    await asyncio.sleep(0.02)
    with pytest.raises(BuildOverloaded):
        await scheduler.get_or_build("3" * 64, "test", assemble)
    assert value(registry, "image_service_assets_build_rejected_total") == 1
    release.set()
    await asyncio.gather(running, queued)


async def test_timeout(tmp_path: Path) -> None:
    scheduler, _ = make(tmp_path, timeout=0.1)

    async def assemble(work: Path) -> Path:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    with pytest.raises(BuildFailed, match="longer than"):
        await scheduler.get_or_build("t" * 64, "test", assemble)
    assert await scheduler.cached("t" * 64) is None
