"""The benchmark run: set everything up, run the sections in order, write and print results.

Order: the test release is built or reused and pushed into a local registry; the main
``image-service serve`` starts (with Secure Boot keys) and is warmed up — one throw-away
flavor's initramfs, UKI and kernel are built, so every input blob is in its cache and the cold
builds that follow measure building, not the first pull (except the one row that asks for
exactly that). Then: 1 cold builds, 2 downloads, 3 dedup, 4 flavor API; 5 memory is what the
samplers recorded over the whole run. A section that fails is recorded with its error and the
run goes on; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.api import flavor_api
from bench.builds import cold_builds
from bench.dedup import dedup
from bench.downloads import downloads
from bench.machine import describe
from bench.report import markdown, ratios, write
from bench.stack import ARCH, VERSION, Service, Stack
from services.builder.tools import DEFAULT_PATH

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("builds", "downloads", "dedup", "api")


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Tools the benchmark itself runs (the service checks its own), by section; Debian packages.
_NEEDS = {
    "": {"docker-registry": "docker-registry", "skopeo": "skopeo"},
    "builds": {
        "tar": "tar", "zstd": "zstd", "xz": "xz-utils", "cpio": "cpio", "depmod": "kmod",
        "mksquashfs": "squashfs-tools", "unsquashfs": "squashfs-tools", "sbsign": "sbsigntool",
        "xorriso": "xorriso", "qemu-img": "qemu-utils", "gzip": "gzip", "sfdisk": "fdisk",
        "mkfs.vfat": "dosfstools", "mcopy": "mtools", "mkfs.xfs": "xfsprogs",
    },
    "downloads": {"nginx": "nginx"},
}  # fmt: skip


def _missing_tools(sections: tuple[str, ...]) -> dict[str, str]:
    needed = {k: v for section in ("", *sections) for k, v in _NEEDS.get(section, {}).items()}
    path = f"{os.environ.get('PATH', '')}:{DEFAULT_PATH}"
    return {tool: pkg for tool, pkg in needed.items() if shutil.which(tool, path=path) is None}


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _warm_up(service: Service) -> None:
    flavor = service.flavor()
    for path in (f"initramfs-{ARCH}.xz", f"metal-{ARCH}-uki.efi", f"kernel-{ARCH}"):
        answer = service.client.get(f"/image/{flavor}/{VERSION}/{path}")
        if answer.status_code != 200:
            raise RuntimeError(f"warm-up {path}: {answer.status_code} {answer.text[:200]}")


def _section(
    result: dict[str, Any], name: str, key: str, run: Callable[[], object], main: Service
) -> None:
    """Run one section; record its result (or error) and the main service's memory meanwhile."""
    _log(f"section {name}")
    start = time.monotonic()
    try:
        result[key] = run()
    except Exception as exc:
        traceback.print_exc()
        result.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
    end = time.monotonic()
    peak = main.sampler.window(start, end).to_json()
    result.setdefault("section_memory", {})[name] = {"seconds": round(end - start, 1), **peak}
    _log(f"section {name} done in {end - start:.1f}s")


def run(work: Path, sections: tuple[str, ...], reps: int) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": describe(REPO),
        "talos_version": VERSION,
        "arch": ARCH,
        "load_average": {"start": _loadavg()},
    }
    stack = Stack(work)
    try:
        _log("test release and registry")
        stack.start()
        main = stack.service("main")
        _log("warm-up: pulling every input once")
        _warm_up(main)
        if "builds" in sections:
            _section(
                result,
                "1 cold builds",
                "cold_builds",
                lambda: [
                    r.to_json() for r in cold_builds(stack, main, work / "builds", reps, _log)
                ],
                main,
            )
        if "downloads" in sections:
            _section(
                result,
                "2 downloads",
                "downloads",
                lambda: downloads(main, work / "downloads", (1, 8)).to_json(),
                main,
            )
        if "dedup" in sections:
            _section(result, "3 dedup", "dedup", lambda: dedup(main).to_json(), main)
        if "api" in sections:
            _section(
                result,
                "4 flavor API",
                "flavor_api",
                lambda: [r.to_json() for r in flavor_api(main, work / "api")],
                main,
            )
    finally:
        stack.stop()
    result["load_average"]["end"] = _loadavg()
    result["setup_seconds"] = {k: round(v, 2) for k, v in stack.setup_seconds.items()}
    result["memory"] = [s.sampler.to_json() for s in stack.services]
    result["ratios"] = ratios(result)
    result["duration_s"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark image-service against baselines on this machine.",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results", help="results directory"
    )
    parser.add_argument("--reps", type=int, default=3, help="cold builds per asset kind")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    sections = tuple(s for s in args.only.split(",") if s)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    missing = _missing_tools(sections)
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        print(
            f"error: the benchmark needs {', '.join(sorted(missing))}; "
            f"install them with: apt-get install {packages}",
            file=sys.stderr,
        )
        return 2
    if shutil.which("wrk") is None:
        _log("wrk is not installed (Debian package wrk): section 4 falls back to httpx")
    work = Path(tempfile.mkdtemp(prefix="image-service-bench-"))
    try:
        result = run(work, sections, max(args.reps, 1))
    finally:
        if args.keep:
            _log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    as_json, as_md = write(result, args.out)
    print(markdown(result))
    _log(f"results written to {as_json} and {as_md}")
    return 1 if result.get("errors") else 0
