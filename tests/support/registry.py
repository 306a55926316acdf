"""A real OCI registry (Debian's ``docker-registry``, distribution 2.8) for the tests.

``LocalRegistry`` starts the registry on a free loopback port with its storage in a temporary
directory, waits until ``/v2/`` answers, and stops it again. Tests that need to see the service
survive an outage call ``stop()`` and ``start()`` on the same instance: the port and the stored
content are kept.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx

__all__ = ["LocalRegistry", "free_port"]

REGISTRY_BINARY = "/usr/bin/docker-registry"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRegistry:
    """One docker-registry process on loopback, plain HTTP, deletes enabled."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        if not Path(REGISTRY_BINARY).exists():
            raise RuntimeError(
                f"{REGISTRY_BINARY} is missing; install the Debian package docker-registry"
            )
        self.root = root
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        self._config = root / "config.yml"
        self._config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )

    @property
    def host(self) -> str:
        """``HOST:PORT`` as used in image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 15.0) -> None:
        if self._proc is not None:
            return
        log = self._log = (self.root / "registry.log").open("ab")
        self._proc = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(self._config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited early; see {self.root / 'registry.log'}"
                )
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def wipe(self) -> None:
        """Stop the registry and delete everything it stored."""
        self.stop()
        shutil.rmtree(self.root / "data", ignore_errors=True)
