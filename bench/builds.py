"""Section 1: cold builds of every asset kind, next to the unavoidable work inside them.

:data:`KINDS` lists the rows. Each row is built ``reps`` times, cold every time: a new flavor
per build (the flavor's ID is part of every build key that embeds it), and for the kernel —
the same for every flavor — a new service with an empty asset store per build. Each build is
timed at the client, from sending the request to the last byte of the answer (the asset is
small next to the build, except disk images), while the service's memory is sampled; the
``image_factory_assets_built_total`` counter must go up by one, or the row says it was not
cold. The first build's output then goes to the kind's baseline recipe
(:mod:`bench.baselines`); the ratio is the median build time over the baseline's total.

A kind the service answers 501 for is recorded as ``not built yet (501)``; any other failure
is recorded with its status and message, and the benchmark goes on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.baselines import Baselines, Part, Step, measure
from bench.rss import MiB, WindowPeak
from bench.stack import ARCH, EXTENSIONS, VERSION, Fetched, Service, Stack

__all__ = ["KINDS", "BuildRow", "Kind", "cold_builds"]

_INDEX_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_BUILT = "image_factory_assets_built_total"
_BUILD_SECONDS = "image_factory_assets_build_latency_seconds_sum"
_BUDGET_S = 90.0  # per kind: stop repeating after this much (at least one build)


@dataclass(frozen=True)
class Kind:
    name: str
    path: str  # under /image/<flavor>/<version>/; for the registry: /v2/... template
    metric: str  # kind label of image_factory_assets_built_total
    service: str = "main"  # "main", or "fresh" (new store, warm inputs), "empty" (new data dir)
    registry: bool = False

    def url(self, flavor: str) -> str:
        if self.registry:
            return self.path.format(flavor=flavor, version=VERSION)
        return f"/image/{flavor}/{VERSION}/{self.path}"


KINDS: tuple[Kind, ...] = (
    Kind("kernel", f"kernel-{ARCH}", "kernel", service="fresh"),
    Kind("kernel, empty data dir", f"kernel-{ARCH}", "kernel", service="empty"),
    Kind("cmdline", f"cmdline-metal-{ARCH}", "cmdline"),
    Kind("initramfs, 4 extensions", f"initramfs-{ARCH}.xz", "initramfs"),
    Kind("UKI", f"metal-{ARCH}-uki.efi", "uki"),
    Kind("UKI, Secure Boot", f"metal-{ARCH}-secureboot-uki.efi", "uki"),
    Kind("ISO", f"metal-{ARCH}.iso", "iso"),
    Kind("metal raw.zst", f"metal-{ARCH}.raw.zst", "image"),
    Kind("qcow2", f"metal-{ARCH}.qcow2", "image"),
    Kind("installer tar", f"installer-{ARCH}.tar", "installer"),
    Kind(
        "registry installer index",
        "/v2/installer/{flavor}/manifests/{version}",
        "installer",
        registry=True,
    ),
)


@dataclass
class BuildRun:
    seconds: float
    size: int
    peak: WindowPeak
    built: float  # increase of image_factory_assets_built_total{kind} during the request
    in_scheduler: float  # build seconds the service measured itself (slot held to commit)

    def to_json(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 4),
            "bytes": self.size,
            "builds_counted": self.built,
            "service_build_seconds": round(self.in_scheduler, 4),
            **self.peak.to_json(),
        }


@dataclass
class BuildRow:
    kind: Kind
    status: str = "ok"  # or "not built yet (501)", "failed (...)"
    runs: list[BuildRun] = field(default_factory=list)
    baseline: list[Part] = field(default_factory=list)
    baseline_note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.runs)

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def service_seconds(self) -> float:
        return statistics.median(r.in_scheduler for r in self.runs)

    @property
    def baseline_seconds(self) -> float:
        return sum(p.seconds for p in self.baseline)

    @property
    def ratio(self) -> float | None:
        if not self.ok or self.baseline_seconds <= 0:
            return None
        return self.seconds / self.baseline_seconds

    @property
    def cold(self) -> bool:
        return all(r.built >= 1 for r in self.runs)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.name,
            "path": self.kind.path,
            "status": self.status,
            "cold": self.cold if self.ok else None,
            "median_seconds": round(self.seconds, 4) if self.ok else None,
            "median_service_build_seconds": round(self.service_seconds, 4) if self.ok else None,
            "peak_rss_service_mib": self.peak_mib("root_rss"),
            "peak_rss_tree_mib": self.peak_mib("tree_rss"),
            "bytes": self.runs[0].size if self.ok else None,
            "runs": [r.to_json() for r in self.runs],
            "baseline_seconds": round(self.baseline_seconds, 4) if self.baseline else None,
            "baseline": [p.to_json() for p in self.baseline],
            "baseline_note": self.baseline_note,
            "ratio": None if self.ratio is None else round(self.ratio, 2),
        }

    def peak_mib(self, which: str) -> float | None:
        if not self.ok:
            return None
        peak: int = max(getattr(r.peak, which) for r in self.runs)
        return round(peak / MiB, 1)


def http_floor(service: Service, count: int = 30) -> float:
    """Median round trip of ``GET /healthz``: the least any request costs."""
    times = []
    for _ in range(count):
        start = time.monotonic()
        service.client.get("/healthz").raise_for_status()
        times.append(time.monotonic() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class _Recipe:
    note: str
    steps: list[Step] = field(default_factory=list)  # timed now
    known: list[Part] = field(default_factory=list)  # timed before


class _Runner:
    def __init__(self, stack: Stack, main: Service, work: Path, reps: int) -> None:
        assert stack.release is not None
        self.stack = stack
        self.main = main
        self.work = work
        self.reps = reps
        work.mkdir(parents=True, exist_ok=True)
        self.baselines = Baselines(
            stack.release, VERSION, ARCH, work / "baselines", main.secureboot_keys()
        )
        self.rows: dict[str, BuildRow] = {}
        self._count = 0

    def _dest(self, name: str) -> Path:
        self._count += 1
        return self.work / f"{self._count:03d}-{name.rpartition('/')[2]}"

    def _service(self, kind: Kind, rep: int) -> Service:
        if kind.service == "main":
            return self.main
        seed = self.main if kind.service == "fresh" else None
        return self.stack.service(f"{kind.service}-kernel-{rep}", seed_from=seed, secureboot=False)

    def build_once(self, kind: Kind, rep: int) -> tuple[Fetched, dict[str, float], str]:
        """One cold build: the answer, the metrics' increase meanwhile, the flavor used."""
        service = self._service(kind, rep)
        try:
            flavor = service.flavor()
            before = service.metrics(kind.metric)
            headers = {"Accept": _INDEX_ACCEPT} if kind.registry else None
            fetched = service.fetch(kind.url(flavor), self._dest(kind.path), headers=headers)
            after = service.metrics(kind.metric)
        finally:
            if service is not self.main:
                service.stop()
        return fetched, {k: v - before.get(k, 0.0) for k, v in after.items()}, flavor

    def row(self, kind: Kind) -> BuildRow:
        row = BuildRow(kind)
        first: tuple[Fetched, str] | None = None
        started = time.monotonic()
        for rep in range(self.reps):
            if rep and time.monotonic() - started > _BUDGET_S:
                break
            fetched, delta, flavor = self.build_once(kind, rep)
            if fetched.status == 501:
                row.status = "not built yet (501)"
                return row
            if fetched.status != 200:
                row.status = f"failed ({fetched.status}: {fetched.text[:120]})"
                return row
            row.runs.append(
                BuildRun(
                    fetched.seconds,
                    fetched.size,
                    fetched.peak,
                    built=delta.get(_BUILT, 0.0),
                    in_scheduler=delta.get(_BUILD_SECONDS, 0.0),
                )
            )
            first = first or (fetched, flavor)
        assert first is not None
        try:
            recipe = self.recipe(row, *first)
            row.baseline = recipe.known + measure(recipe.steps, self.reps)
            row.baseline_note = recipe.note
        except Exception as exc:  # a baseline that cannot run must not hide the build numbers
            row.baseline_note = f"baseline failed: {exc}"
        return row

    def flavor_initramfs(self, flavor: str) -> Path:
        """The flavor's initramfs (the same content composite kinds embed), fetched untimed."""
        fetched = self.main.fetch(f"/image/{flavor}/{VERSION}/initramfs-{ARCH}.xz", self._dest("i"))
        if fetched.status != 200:
            raise RuntimeError(f"initramfs of {flavor}: {fetched.status} {fetched.text}")
        return fetched.dest

    def recipe(self, row: BuildRow, fetched: Fetched, flavor: str) -> _Recipe:
        kind, b, out = row.kind, self.baselines, fetched.dest
        if kind.metric == "kernel":
            if kind.service == "empty":
                return _Recipe(
                    "pull the imager layers, extract vmlinuz", [self._pull(), *b.kernel()]
                )
            return _Recipe("extract vmlinuz from the imager layer", b.kernel())
        if kind.metric == "cmdline":
            return _Recipe("HTTP floor: nothing to build", known=[self._floor()])
        if kind.registry:
            # the index needs one installer per arch, each counted as an installer build
            installer = self.rows.get("installer tar")
            builds = round(statistics.median(r.built for r in row.runs))
            if builds and installer is not None and installer.baseline:
                known = [
                    Part(f"{p.name} x{builds}", p.seconds * builds) for p in installer.baseline
                ]
                return _Recipe(f"the installer tar's baseline x{builds} builds", known=known)
            return _Recipe("HTTP floor: no build counted", known=[self._floor()])
        initramfs = out if kind.metric == "initramfs" else self.flavor_initramfs(flavor)
        steps = b.initramfs(initramfs, EXTENSIONS)
        if kind.metric == "initramfs":
            return _Recipe("extension layers, modules, mksquashfs, compressor", steps)
        secureboot = kind.path.endswith("-secureboot-uki.efi")
        steps += b.uki(initramfs, out if secureboot else None, secureboot=secureboot)
        note = "initramfs steps + UKI inputs copied"
        if secureboot:
            return _Recipe(note + " + sbsign", steps)
        if kind.metric == "uki":
            return _Recipe(note, steps)
        if kind.metric == "iso":
            steps += b.iso(out)
        elif kind.metric == "image":
            steps += b.disk(out, initramfs)
        else:
            steps += b.installer(out)
        return _Recipe(f"{note} + {kind.metric} tool", steps)

    def _floor(self) -> Part:
        return Part("GET /healthz round trip", http_floor(self.main))

    def _pull(self) -> Step:
        """Download the imager's layers from the registry, as an empty data dir must."""
        assert self.stack.registry is not None
        imager = self.baselines.talos.imager
        layers = self.baselines.layers(imager.repo, imager.tag)
        base = f"{self.stack.registry.url}/v2/{imager.repo}/blobs/sha256:"
        sink = self.work / "pulled"

        def pull() -> None:
            with httpx.Client() as client, sink.open("wb") as out:
                for layer in layers:
                    with client.stream("GET", base + layer.name) as answer:
                        answer.raise_for_status()
                        for chunk in answer.iter_raw(1 << 20):
                            out.write(chunk)

        return Step(f"GET {len(layers)} imager layers from the registry", pull)


def cold_builds(
    stack: Stack, main: Service, work: Path, reps: int, log: Callable[[str], None]
) -> list[BuildRow]:
    runner = _Runner(stack, main, work, reps)
    for kind in KINDS:
        start = time.monotonic()
        row = runner.row(kind)
        runner.rows[kind.name] = row
        log(f"  {kind.name}: {row.status} ({time.monotonic() - start:.1f}s)")
    return list(runner.rows.values())
