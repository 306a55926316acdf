"""nginx (Debian package ``nginx``) serving one directory on a free loopback port.

The download baseline: a static file server people consider fast, with ``sendfile`` on, two
workers (one per core here), no access log. Everything it writes (pid, temp dirs, error log)
stays in a private directory; as root its workers run as root too, so they can read a data dir
under a private temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.registry import free_port

__all__ = ["Nginx"]

_CONFIG = """\
{user}
worker_processes {workers};
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /healthz {{ return 204; }}
    }}
}}
"""


class Nginx:
    def __init__(self, root: Path, run_dir: Path, workers: int = 2) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is missing; install the Debian package nginx")
        self.binary = binary
        self.port = free_port()
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.config = run_dir / "nginx.conf"
        self.config.write_text(
            _CONFIG.format(
                user="user root;" if os.geteuid() == 0 else "",
                workers=workers,
                run=run_dir,
                port=self.port,
                root=root,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("nginx is not running")
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Nginx:
        log = (self.run_dir / "stderr.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.run_dir), "-c", str(self.config), "-e", "stderr"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited early: {self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 204:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not answer within {timeout} s: {self.log()}")

    def log(self) -> str:
        parts = [self.run_dir / "stderr.log", self.run_dir / "error.log"]
        return "".join(p.read_text(errors="replace") for p in parts if p.exists())[-2000:]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()  # SIGTERM: fast shutdown of master and workers
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
