"""Prometheus metrics of the builder, registered on a registry the composition root owns.

Names follow upstream's ``image_factory_assets_*`` family where one exists, so dashboards carry
over; every metric is labelled by asset kind.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["BuilderMetrics"]

_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 180, 600)


class BuilderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.builds_started = Counter(
            "image_factory_assets_built",
            "Asset builds started (cache misses that built)",
            ["kind"],
            registry=registry,
        )
        self.builds_failed = Counter(
            "image_service_assets_build_failures",
            "Asset builds that failed (never cached)",
            ["kind"],
            registry=registry,
        )
        self.cache_hits = Counter(
            "image_factory_assets_delivered_cached",
            "Assets answered from the cache",
            ["kind"],
            registry=registry,
        )
        self.joined = Counter(
            "image_service_assets_build_joined",
            "Requests that joined a build already running for the same asset",
            ["kind"],
            registry=registry,
        )
        self.rejected = Counter(
            "image_service_assets_build_rejected",
            "Builds refused because the queue was full",
            ["kind"],
            registry=registry,
        )
        self.built_bytes = Counter(
            "image_factory_assets_built_bytes",
            "Bytes of assets built",
            ["kind"],
            registry=registry,
        )
        self.build_seconds = Histogram(
            "image_factory_assets_build_latency_seconds",
            "Wall time of asset builds",
            ["kind"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.queue_seconds = Histogram(
            "image_factory_assets_concurrency_latency_seconds",
            "Time builds waited for a build slot",
            ["kind"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.served_bytes = Counter(
            "image_service_assets_served_bytes",
            "Bytes of assets streamed to readers",
            registry=registry,
        )
