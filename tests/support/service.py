"""Run ``image-service`` as a real process on a free loopback port, the way users run it.

``ServiceProcess`` starts the console script with argv flags, waits for ``/healthz`` (or, for a
gRPC-only component, for its port) with a deadline — no sleeps — and keeps stderr in a log file
the tests can read (request ids, shutdown messages).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from tests.support.keys import write_secureboot_keys
from tests.support.registry import free_port

__all__ = ["ServiceProcess", "release_service", "wait_for_port"]

EXECUTABLE = str(Path(sys.executable).with_name("image-service"))


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class ServiceProcess:
    def __init__(
        self,
        args: list[str],
        log_path: Path,
        *,
        port: int | None = None,
        http: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.args = args
        self.log_path = log_path
        self.http = http
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [EXECUTABLE, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"image-service exited early:\n{self.log()}")
            try:
                if self.http:
                    if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                        return self
                else:
                    wait_for_port(self.port, timeout=0.2)
                    return self
            except (httpx.TransportError, TimeoutError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"image-service did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        proc, self.proc = self.proc, None
        rc = 0
        if proc is not None:
            proc.send_signal(sig)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc


def release_service(
    tmp: Path,
    registry_host: str,
    *extra: str,
    secureboot: bool = True,
    port: int | None = None,
) -> ServiceProcess:
    """``image-service serve`` pulling the test release from ``registry_host`` (plain HTTP),
    with throw-away Secure Boot keys unless ``secureboot`` is false, listening on ``port`` (a
    free one by default). Started; stop it."""
    tmp.mkdir(parents=True, exist_ok=True)
    args = [
        "serve",
        "--data-dir",
        str(tmp / "data"),
        "--image-registry",
        registry_host,
        "--insecure-image-registry",
        *extra,
    ]
    if secureboot:
        keys = write_secureboot_keys(tmp / "keys")
        args += [
            "--secureboot-signing-key",
            str(keys.signing_key),
            "--secureboot-signing-cert",
            str(keys.signing_cert),
            "--secureboot-pcr-key",
            str(keys.pcr_key),
        ]
    proc = ServiceProcess(args, tmp / "service.log", port=port)
    proc.args += ["--listen", f"127.0.0.1:{proc.port}"]
    return proc.start()
