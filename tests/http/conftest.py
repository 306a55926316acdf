"""A running ``image-service serve`` per storage backend, shared by the HTTP API tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess


@pytest.fixture(scope="module", params=["filesystem", "registry"])
def service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp(f"serve-{request.param}")
    args = ["serve", "--data-dir", str(tmp / "data")]
    if request.param == "registry":
        reg: LocalRegistry = request.getfixturevalue("registry")
        args += [
            "--storage",
            "registry",
            "--storage-registry",
            reg.host,
            "--insecure-storage-registry",
            "--storage-repository",
            f"flavor-tests-{Path(tmp).name}",
        ]
    proc = ServiceProcess(args, tmp / "service.log")
    proc.args += ["--listen", f"127.0.0.1:{proc.port}"]
    proc.start()
    yield proc
    assert proc.stop() == 0, proc.log()
