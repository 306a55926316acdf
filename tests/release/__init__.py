"""A synthetic Talos release for the tests, laid out like ghcr.io/siderolabs.

``ensure_release(cache_root)`` builds it (or reuses the cached build) and returns a
:class:`Release`; ``push_release(release, "HOST:PORT")`` pushes every image into a registry.
CLI: ``python -m tests.release build [--cache DIR]`` and ``python -m tests.release push
--registry HOST:PORT``. What it contains and how it deviates from real Talos: ``spec.py``;
the init's marker lines: ``init.sh`` and ``markers.py``.
"""

from tests.release.build import DEFAULT_CACHE, ensure_release
from tests.release.model import ArchArtifacts, Extension, Image, Overlay, Release, TalosRelease
from tests.release.push import push_release

__all__ = [
    "DEFAULT_CACHE",
    "ArchArtifacts",
    "Extension",
    "Image",
    "Overlay",
    "Release",
    "TalosRelease",
    "ensure_release",
    "push_release",
]
