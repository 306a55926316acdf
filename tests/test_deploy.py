"""compose.yaml and the Dockerfile, checked as far as this machine allows (no container engine).

Every image-service container's command must parse with the real CLI and its environment must
validate as settings; every peer address must name a service of the file; the router must reach
the HTTP frontend; the Dockerfile must copy every package the project installs.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from composition import cli
from image_service.settings import load_settings
from services.builder.tools import BUILDER_TOOLS, TOOL_PACKAGES

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def image_service_containers() -> dict[str, dict]:
    return {
        name: spec
        for name, spec in compose()["services"].items()
        if spec.get("image", "").startswith("image-service")
    }


def test_every_component_has_a_container() -> None:
    commands = {spec["command"][1] for spec in image_service_containers().values()}
    assert commands == {c.value for c in cli.Component}


@pytest.mark.parametrize("name", sorted(image_service_containers()))
def test_container_command_and_environment_validate(name: str) -> None:
    spec = image_service_containers()[name]
    args = cli._parser().parse_args(spec["command"])
    assert isinstance(args, argparse.Namespace)
    environment = {k: str(v) for k, v in spec["environment"].items()}
    settings = load_settings(args, environment)
    cli._check_required(cli.Component(args.component), settings)
    services = compose()["services"]
    for attr in ("flavor_address", "catalog_address", "builder_address"):
        address = getattr(settings, attr)
        if address:
            host, port = address.rsplit(":", 1)
            assert host in services, f"{name} points at unknown service {host}"
            peer = services[host]["command"]
            assert f"0.0.0.0:{port}" in peer, f"{host} does not listen on {port}"
    registry = settings.storage_registry.split(":")[0]
    assert registry in services


def test_router_reaches_every_frontend() -> None:
    conf = (ROOT / "deploy" / "router.conf").read_text()
    pattern = r"location (\S+) \{\s*proxy_pass http://([a-z-]+):(\d+)"
    routes = {location: (host, port) for location, host, port in re.findall(pattern, conf)}
    services = compose()["services"]
    expected = {"/pxe/": "pxe", "/v2": "registry", "/": "http"}
    for location, component in expected.items():
        host, port = routes[location]
        command = services[host]["command"]
        assert command[:2] == ["run", component], (location, command)
        assert f"0.0.0.0:{port}" in command


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in dockerfile


def test_every_build_tool_is_installed_everywhere() -> None:
    """The builder refuses to start without its tools: the container and setup install them."""
    dockerfile = (ROOT / "Dockerfile").read_text().split()
    setup = (ROOT / "scripts" / "setup").read_text().split()
    for tool in BUILDER_TOOLS:
        package = TOOL_PACKAGES[tool]
        if package in {"coreutils", "tar", "gzip"}:  # essential in every Debian system
            continue
        assert package in dockerfile, f"Dockerfile lacks {package} ({tool})"
        assert package in setup, f"scripts/setup lacks {package} ({tool})"
