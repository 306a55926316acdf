"""``python -m tests.release build [--cache DIR]`` / ``push --registry HOST:PORT [--cache DIR]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.release.build import DEFAULT_CACHE, ensure_release
from tests.release.push import push_release
from tests.release.tools import ToolError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.release", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the test release (or reuse the cached build)")
    push = sub.add_parser("push", help="build if needed, then push every image to a registry")
    for p in (build, push):
        p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"default {DEFAULT_CACHE}")
    push.add_argument("--registry", required=True, help="HOST:PORT of a plain-HTTP registry")
    args = parser.parse_args(argv)
    try:
        start = time.monotonic()
        release = ensure_release(args.cache, log=True)
        print(f"release {release.root} ({time.monotonic() - start:.1f}s)")
        if args.command == "push":
            start = time.monotonic()
            push_release(release, args.registry)
            took = time.monotonic() - start
            print(f"pushed {len(release.images)} tags to {args.registry} ({took:.1f}s)")
        else:
            for image in release.images:
                print(f"{image.pinned()}  {' '.join(image.platforms)}")
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
