"""Settings precedence (flags > env > file > defaults) and validation messages."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from image_service.settings import (
    Settings,
    SettingsError,
    StorageKind,
    add_arguments,
    load_settings,
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_match_the_design() -> None:
    settings = load_settings(parse([]), {})
    assert settings.listen == "127.0.0.1:8080"
    assert settings.external_url == "http://127.0.0.1:8080/"
    assert settings.pxe_base_url == "http://127.0.0.1:8080/"
    assert settings.data_dir == Path("./data")
    assert settings.image_registry == "ghcr.io"
    assert settings.insecure_image_registry is False
    assert settings.min_talos_version == "1.5.0"
    assert settings.storage is StorageKind.FILESYSTEM
    assert settings.max_request_bytes == 1024 * 1024


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "listen: 127.0.0.1:1111\nimage-registry: file.example:5000\nlog_level: debug\n"
    )
    env = {
        "IMAGE_SERVICE_CONFIG": str(config),
        "IMAGE_SERVICE_IMAGE_REGISTRY": "env.example:5000",
        "IMAGE_SERVICE_INSECURE_IMAGE_REGISTRY": "true",
    }
    settings = load_settings(parse(["--image-registry", "flag.example"]), env)
    assert settings.listen == "127.0.0.1:1111"  # file
    assert settings.log_level == "debug"  # file, underscore spelling
    assert settings.insecure_image_registry is True  # env
    assert settings.image_registry == "flag.example"  # flag beats env and file
    assert load_settings(parse([]), env).image_registry == "env.example:5000"


def test_external_urls() -> None:
    settings = load_settings(
        parse(["--external-url", "https://factory.example.org", "--listen", "0.0.0.0:80"]), {}
    )
    assert settings.base_url == "https://factory.example.org/"
    assert settings.pxe_base_url == "https://factory.example.org/"
    pxe = load_settings(parse(["--external-pxe-url", "http://10.0.0.1:8080/"]), {})
    assert pxe.pxe_base_url == "http://10.0.0.1:8080/"
    assert load_settings(parse(["--listen", "0.0.0.0:9000"]), {}).base_url == (
        "http://localhost:9000/"
    )


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (["--listen", "nonsense"], {}, "listen (from flag --listen)"),
        ([], {"IMAGE_SERVICE_LISTEN": "1.2.3.4:99999"}, "IMAGE_SERVICE_LISTEN"),
        (["--external-url", "ftp://x"], {}, "external-url"),
        (["--image-registry", "https://ghcr.io"], {}, "image-registry"),
        (["--min-talos-version", "one"], {}, "min-talos-version"),
        (["--storage", "s3"], {}, "storage"),
        (["--storage", "registry"], {}, "storage-registry"),
        (["--max-request-bytes", "-5"], {}, "max-request-bytes"),
        ([], {"IMAGE_SERVICE_INSECURE_IMAGE_REGISTRY": "maybe"}, "insecure-image-registry"),
        (["--secureboot-signing-key", "/nonexistent.pem"], {}, "secureboot-signing-cert"),
    ],
)
def test_invalid_values_name_the_key(argv: list[str], env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names.replace("(", r"\(").replace(")", r"\)")):
        load_settings(parse(argv), env)


def test_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: [1\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(parse(["--config", str(bad)]), {})
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("lisen: 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'lisen'"):
        load_settings(parse(["--config", str(unknown)]), {})
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(parse(["--config", str(tmp_path / "missing.yaml")]), {})


def test_settings_are_frozen() -> None:
    settings = load_settings(parse([]), {})
    with pytest.raises(AttributeError):
        settings.listen = "x"  # type: ignore[misc]
    assert isinstance(settings, Settings)
