"""Fixtures of the OCI client tests: the async backend, fresh repository names, a cache."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from image_service.oci import BlobCache


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name no other test uses, e.g. ``test/push-blob-3f9c2a1b``."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"test/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cache(tmp_path: Path) -> BlobCache:
    return BlobCache(tmp_path / "cache")
