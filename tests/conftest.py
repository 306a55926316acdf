"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.release import DEFAULT_CACHE, Release, ensure_release, push_release
from tests.support.registry import LocalRegistry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A real docker-registry on a free loopback port for the whole session."""
    reg = LocalRegistry(Path(tmp_path_factory.mktemp("registry")))
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def test_release() -> Release:
    """The test release, built once into the cache (``$IMAGE_SERVICE_TEST_RELEASE_CACHE``,
    default ``~/.cache/image-service/test-release``) and reused while its inputs are unchanged."""
    cache = os.environ.get("IMAGE_SERVICE_TEST_RELEASE_CACHE")
    return ensure_release(Path(cache) if cache else DEFAULT_CACHE)


@pytest.fixture(scope="session")
def release_registry(registry: LocalRegistry, test_release: Release) -> LocalRegistry:
    """The session ``registry`` with every image of the test release pushed (once) into it."""
    push_release(test_release, registry.host)
    return registry
