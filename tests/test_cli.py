"""The ``image-service`` command: components as separate processes, config errors, shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.registry import LocalRegistry, free_port
from tests.support.service import EXECUTABLE, ServiceProcess

EMPTY_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"


def test_components_run_alone_and_share_the_request_id(tmp_path: Path) -> None:
    flavor = ServiceProcess(
        ["run", "flavor", "--data-dir", str(tmp_path / "data")],
        tmp_path / "flavor.log",
        http=False,
    )
    flavor.args += ["--grpc-listen", f"127.0.0.1:{flavor.port}"]
    flavor.start()
    http = ServiceProcess(
        [
            "run",
            "http",
            "--flavor-address",
            f"127.0.0.1:{flavor.port}",
            "--catalog-address",
            f"127.0.0.1:{free_port()}",
            "--builder-address",
            f"127.0.0.1:{free_port()}",
        ],
        tmp_path / "http.log",
    )
    http.args += ["--listen", f"127.0.0.1:{http.port}"]
    try:
        http.start()
        answer = httpx.post(
            f"{http.url}/schematics", content="{}", headers={"X-Request-ID": "trace-me-42"}
        )
        assert answer.status_code == 201
        assert answer.json()["id"] == EMPTY_ID
        assert answer.headers["x-request-id"] == "trace-me-42"
    finally:
        assert http.stop() == 0
        assert flavor.stop() == 0
    flavor_log = flavor.log()
    assert "[trace-me-42]" in flavor_log
    assert EMPTY_ID in flavor_log
    assert (tmp_path / "data").is_dir()


def test_http_alone_without_flavor_service_is_not_ready(tmp_path: Path) -> None:
    http = ServiceProcess(
        [
            "run",
            "http",
            "--flavor-address",
            f"127.0.0.1:{free_port()}",
            "--catalog-address",
            f"127.0.0.1:{free_port()}",
            "--builder-address",
            f"127.0.0.1:{free_port()}",
        ],
        tmp_path / "http.log",
    )
    http.args += ["--listen", f"127.0.0.1:{http.port}"]
    http.start()
    try:
        assert httpx.get(f"{http.url}/readyz", timeout=10).status_code == 503
        answer = httpx.post(f"{http.url}/schematics", content="{}", timeout=30)
        assert answer.status_code == 503
        assert answer.headers["retry-after"]
    finally:
        assert http.stop() == 0


def test_configuration_error_exits_before_listening(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [EXECUTABLE, "serve", "--listen", f"127.0.0.1:{port}", "--storage", "registry"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "storage-registry" in result.stderr
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_http_alone_needs_its_peer() -> None:
    result = subprocess.run(
        [EXECUTABLE, "run", "http"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "--flavor-address" in result.stderr


def test_sigint_and_sigterm_shut_down_gracefully(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = ServiceProcess(["serve", "--data-dir", str(tmp_path)], tmp_path / f"{sig}.log")
        proc.args += ["--listen", f"127.0.0.1:{proc.port}"]
        proc.start()
        assert httpx.post(f"{proc.url}/schematics", content="{}").status_code == 201
        assert proc.stop(sig) == 0
        assert "shutting down" in proc.log()
        assert "Traceback" not in proc.log()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [EXECUTABLE, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr


@pytest.mark.registry
def test_every_component_runs_as_its_own_process(
    release_registry: LocalRegistry, tmp_path: Path
) -> None:
    """The scaled-out shape of compose.yaml, with real processes on loopback."""
    registry = ["--image-registry", release_registry.host, "--insecure-image-registry"]
    data = ["--data-dir", str(tmp_path / "data")]
    procs: list[ServiceProcess] = []

    def start(name: str, args: list[str], *, http: bool) -> ServiceProcess:
        proc = ServiceProcess(["run", name, *args], tmp_path / f"{name}.log", http=http)
        flag = "--listen" if http else "--grpc-listen"
        proc.args += [flag, f"127.0.0.1:{proc.port}"]
        procs.append(proc.start())
        return proc

    try:
        flavor = start("flavor", data, http=False)
        catalog = start("catalog", [*data, *registry], http=False)
        peers = [
            "--flavor-address",
            f"127.0.0.1:{flavor.port}",
            "--catalog-address",
            f"127.0.0.1:{catalog.port}",
        ]
        builder = start("builder", [*data, *registry, *peers], http=False)
        to_builder = ["--builder-address", f"127.0.0.1:{builder.port}"]
        http = start("http", [*peers, *to_builder], http=True)
        pxe = start("pxe", [*to_builder, "--external-pxe-url", "http://pxe.example/"], http=True)
        oci = start("registry", to_builder, http=True)

        assert httpx.post(f"{http.url}/schematics", content="{}").json()["id"] == EMPTY_ID
        assert httpx.get(f"{http.url}/versions").json()[0] == "v1.7.7"
        cmdline = httpx.get(f"{http.url}/image/{EMPTY_ID}/v1.11.3/cmdline-metal-amd64")
        assert cmdline.status_code == 200
        script = httpx.get(f"{pxe.url}/pxe/{EMPTY_ID}/v1.11.3/metal-amd64").text
        assert script.startswith("#!ipxe\n")
        assert f"kernel http://pxe.example/image/{EMPTY_ID}/v1.11.3/kernel-amd64 " in script
        assert cmdline.text in script
        assert httpx.get(f"{oci.url}/v2/").status_code == 200
        assert httpx.get(f"{http.url}/readyz").status_code == 200
    finally:
        for proc in reversed(procs):
            assert proc.stop() == 0, proc.log()
