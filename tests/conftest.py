"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.registry import LocalRegistry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A real docker-registry on a free loopback port for the whole session."""
    reg = LocalRegistry(Path(tmp_path_factory.mktemp("registry")))
    reg.start()
    yield reg
    reg.stop()
