"""Settings: one frozen object built once at start, from flags > env > YAML file > defaults.

Every option is declared once in ``OPTIONS``; the table drives the command-line flags
(``--external-url``), the environment variables (``IMAGE_SERVICE_EXTERNAL_URL``), the keys of the
optional YAML file (``external-url:``) and validation. ``load_settings`` merges the sources,
validates every value before any port opens, and raises ``SettingsError`` naming the key, its
source and how to fix it. Nothing else in the code reads ``os.environ``: the composition root
passes the environment in.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "OPTIONS",
    "Option",
    "Settings",
    "SettingsError",
    "StorageKind",
    "add_arguments",
    "load_settings",
]

ENV_PREFIX = "IMAGE_SERVICE_"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the key and the fix."""


class StorageKind(StrEnum):
    FILESYSTEM = "filesystem"
    REGISTRY = "registry"


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one process."""

    listen: str = "127.0.0.1:8080"
    external_url: str = ""
    external_pxe_url: str = ""
    data_dir: Path = Path("./data")
    image_registry: str = "ghcr.io"
    insecure_image_registry: bool = False
    secureboot_signing_key: Path | None = None
    secureboot_signing_cert: Path | None = None
    secureboot_pcr_key: Path | None = None
    min_talos_version: str = "1.5.0"
    storage: StorageKind = StorageKind.FILESYSTEM
    storage_registry: str = ""
    storage_repository: str = "image-service"
    insecure_storage_registry: bool = False
    grpc_listen: str = "127.0.0.1:0"
    flavor_address: str = ""
    catalog_address: str = ""
    builder_address: str = ""
    build_concurrency: int = 2
    build_queue: int = 32
    build_timeout_seconds: float = 1200.0
    catalog_refresh_seconds: float = 900.0
    max_request_bytes: int = 1024 * 1024
    log_level: str = "info"
    log_format: str = "text"

    @property
    def listen_host(self) -> str:
        return _split_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return _split_host_port(self.listen)[1]

    @property
    def base_url(self) -> str:
        """The external URL with exactly one trailing slash."""
        return self.external_url.rstrip("/") + "/"

    @property
    def pxe_base_url(self) -> str:
        return (self.external_pxe_url or self.external_url).rstrip("/") + "/"


@dataclass(frozen=True)
class Option:
    """One setting: its flag/env/YAML name, parser and help text."""

    name: str
    parse: Callable[[str], Any]
    help: str
    flag_only_bool: bool = False

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.attr.upper()


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _split_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _parse_host_port(text: str) -> str:
    host, _ = _split_host_port(text)
    if host not in {"localhost", "0.0.0.0", "::"}:  # noqa: S104 - listening on all interfaces is a user choice
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
                raise ValueError(f"invalid host in {text!r}") from None
    return text


_REGISTRY_RE = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def _parse_registry(text: str) -> str:
    if not _REGISTRY_RE.fullmatch(text):
        raise ValueError(f"expected HOST[:PORT] without scheme or path, got {text!r}")
    return text


def _parse_url(text: str) -> str:
    if not text:
        return text
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {text!r}")
    return text


def _parse_version(text: str) -> str:
    cleaned = text.removeprefix("v")
    if not re.fullmatch(r"\d+\.\d+\.\d+", cleaned):
        raise ValueError(f"expected a version like 1.5.0, got {text!r}")
    return cleaned


def _parse_level(text: str) -> str:
    level = text.lower()
    if level not in {"debug", "info", "warning", "error"}:
        raise ValueError(f"expected one of debug, info, warning, error, got {text!r}")
    return level


def _parse_format(text: str) -> str:
    if text not in {"text", "json"}:
        raise ValueError(f"expected text or json, got {text!r}")
    return text


def _parse_size(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"expected a positive number of bytes, got {text!r}")
    return value


def _parse_seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _parse_file(text: str) -> Path | None:
    return Path(text) if text else None


OPTIONS: tuple[Option, ...] = (
    Option("listen", _parse_host_port, "HTTP listener of the frontends (HOST:PORT)"),
    Option(
        "external-url", _parse_url, "base URL used in generated links (default http://<listen>/)"
    ),
    Option("external-pxe-url", _parse_url, "base URL inside iPXE scripts (default: external URL)"),
    Option("data-dir", Path, "embedded storage and caches"),
    Option("image-registry", _parse_registry, "registry the Talos release images come from"),
    Option(
        "insecure-image-registry",
        _parse_bool,
        "talk plain HTTP to the image registry",
        flag_only_bool=True,
    ),
    Option("secureboot-signing-key", _parse_file, "PEM key signing Secure Boot assets"),
    Option("secureboot-signing-cert", _parse_file, "PEM certificate of the signing key"),
    Option("secureboot-pcr-key", _parse_file, "PEM key signing PCR 11 policies"),
    Option("min-talos-version", _parse_version, "oldest Talos version offered"),
    Option("storage", StorageKind, "storage backend: filesystem or registry"),
    Option("storage-registry", _parse_registry, "registry HOST[:PORT] of the registry backend"),
    Option("storage-repository", str, "repository prefix inside the storage registry"),
    Option(
        "insecure-storage-registry",
        _parse_bool,
        "talk plain HTTP to the storage registry",
        flag_only_bool=True,
    ),
    Option("grpc-listen", _parse_host_port, "gRPC listener of a service run alone (HOST:PORT)"),
    Option("flavor-address", _parse_host_port, "gRPC address of the flavor service (HOST:PORT)"),
    Option("catalog-address", _parse_host_port, "gRPC address of the catalog service (HOST:PORT)"),
    Option(
        "catalog-refresh-seconds",
        _parse_seconds,
        "how long version and extension lists are cached",
    ),
    Option("builder-address", _parse_host_port, "gRPC address of the builder service (HOST:PORT)"),
    Option("build-concurrency", _parse_size, "asset builds running at once"),
    Option("build-queue", _parse_size, "builds allowed to wait for a slot (503 beyond)"),
    Option("build-timeout-seconds", _parse_seconds, "longest an asset build may take"),
    Option("max-request-bytes", _parse_size, "largest accepted request body"),
    Option("log-level", _parse_level, "debug, info, warning or error"),
    Option("log-format", _parse_format, "text or json"),
)

_BY_ATTR = {option.attr: option for option in OPTIONS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and one flag per option; unset flags stay ``None`` (not given)."""
    parser.add_argument("--config", metavar="FILE", help="optional YAML settings file")
    for option in OPTIONS:
        if option.flag_only_bool:
            parser.add_argument(
                f"--{option.name}", dest=option.attr, action="store_const", const="true"
            )
        else:
            parser.add_argument(f"--{option.name}", dest=option.attr, help=option.help)


def _read_file(path: Path) -> dict[str, str]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"config file {path} must hold a mapping of setting names to values")
    values: dict[str, str] = {}
    for key, value in loaded.items():
        attr = str(key).replace("-", "_")
        if attr not in _BY_ATTR:
            raise SettingsError(
                f"config file {path}: unknown setting {key!r}; "
                f"known settings: {', '.join(o.name for o in OPTIONS)}"
            )
        values[attr] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


def load_settings(
    args: argparse.Namespace | None,
    environ: Mapping[str, str],
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge flags > environment > YAML file > defaults and validate the result."""
    raw: dict[str, tuple[str, str]] = {}
    config_file: str | None = getattr(args, "config", None) if args is not None else None
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        for attr, value in _read_file(Path(config_file)).items():
            raw[attr] = (value, f"config file {config_file}")
    for option in OPTIONS:
        if option.env in environ:
            raw[option.attr] = (environ[option.env], f"environment variable {option.env}")
    if args is not None:
        for option in OPTIONS:
            given = getattr(args, option.attr, None)
            if given is not None:
                raw[option.attr] = (str(given), f"flag --{option.name}")

    values: dict[str, Any] = {}
    for attr, (text, source) in raw.items():
        option = _BY_ATTR[attr]
        try:
            values[attr] = option.parse(text)
        except ValueError as exc:
            raise SettingsError(f"invalid {option.name} (from {source}): {exc}") from exc
    values.update(overrides or {})
    settings = Settings(**values)
    return _finish(settings)


def _finish(settings: Settings) -> Settings:
    """Fill derived defaults and check cross-field rules."""
    if not settings.external_url:
        host = settings.listen_host
        if host in {"0.0.0.0", "::", ""}:  # noqa: S104
            host = "localhost"
        settings = dataclasses.replace(
            settings, external_url=f"http://{host}:{settings.listen_port}/"
        )
    if settings.storage is StorageKind.REGISTRY and not settings.storage_registry:
        raise SettingsError(
            "storage is 'registry' but storage-registry is empty; "
            "set --storage-registry HOST[:PORT] (or IMAGE_SERVICE_STORAGE_REGISTRY)"
        )
    keys = {
        "secureboot-signing-key": settings.secureboot_signing_key,
        "secureboot-signing-cert": settings.secureboot_signing_cert,
        "secureboot-pcr-key": settings.secureboot_pcr_key,
    }
    given = [name for name, path in keys.items() if path is not None]
    if given and len(given) != len(keys):
        missing = sorted(set(keys) - set(given))
        raise SettingsError(
            f"Secure Boot needs all of {', '.join(keys)}; missing: {', '.join(missing)}"
        )
    for name, path in keys.items():
        if path is not None and not path.is_file():
            raise SettingsError(f"{name}: {path} is not a readable file")
    return settings
