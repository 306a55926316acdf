"""The ``image-service`` command.

::

    image-service serve [flags]                 everything in one process (embedded default)
    image-service run COMPONENT [flags]         one part alone, pointed at its peers by flags

Settings come from flags > ``IMAGE_SERVICE_*`` environment > ``--config FILE`` > defaults and
are validated before any port opens. ``main`` is the only place that exits the process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from composition.app import Component, run_component, serve
from image_service import __version__
from image_service.logs import configure_logging
from image_service.settings import Settings, SettingsError, add_arguments, load_settings

__all__ = ["main"]

log = logging.getLogger("image_service")

# What each component needs from its peers; checked before anything starts.
_REQUIRED: dict[Component, tuple[str, ...]] = {
    Component.FLAVOR: (),
    Component.CATALOG: (),
    Component.BUILDER: ("flavor_address", "catalog_address"),
    Component.HTTP: ("flavor_address", "catalog_address", "builder_address"),
    Component.PXE: ("builder_address",),
    Component.REGISTRY: ("builder_address",),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="image-service", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"image-service {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_arguments(commands.add_parser("serve", help="run everything in one process"))
    run = commands.add_parser("run", help="run one component alone")
    run.add_argument("component", choices=[c.value for c in Component])
    add_arguments(run)
    return parser


def _check_required(component: Component, settings: Settings) -> None:
    for attr in _REQUIRED[component]:
        if not getattr(settings, attr):
            flag = "--" + attr.replace("_", "-")
            raise SettingsError(
                f"image-service run {component} needs {flag} HOST:PORT "
                f"(or IMAGE_SERVICE_{attr.upper()}) to reach its peer"
            )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args, os.environ)
        if args.command == "run":
            _check_required(Component(args.component), settings)
    except SettingsError as exc:
        print(f"image-service: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            asyncio.run(serve(settings))
        else:
            asyncio.run(run_component(Component(args.component), settings))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
