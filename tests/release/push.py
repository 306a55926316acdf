"""Push a built test release into an OCI registry with skopeo.

Each tag goes with ``skopeo copy --all --preserve-digests oci:<layout>:<tag>
docker://<registry>/siderolabs/<name>:<tag>``: ``--all`` copies every manifest of an index,
``--preserve-digests`` makes skopeo fail rather than convert anything, so the digests in the
``Release`` (and in the ``extensions``/``overlays`` catalogues) are the registry's digests.
Repositories are pushed in parallel, the tags of one repository one after the other.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from tests.release.model import Image, Release
from tests.release.tools import require_tools, run

__all__ = ["push_image", "push_release"]


def push_image(image: Image, registry: str, *, tls_verify: bool = False) -> None:
    run(
        [
            "skopeo", "copy", "--quiet", "--all", "--preserve-digests",
            f"--dest-tls-verify={str(tls_verify).lower()}",
            f"oci:{image.layout}:{image.tag}",
            f"docker://{registry}/{image.repo}:{image.tag}",
        ]
    )  # fmt: skip


def push_release(release: Release, registry: str, *, workers: int = 4) -> None:
    """Push every image of ``release`` to ``registry`` (``HOST:PORT``, plain HTTP)."""
    require_tools(["skopeo"])
    by_repo: dict[str, list[Image]] = defaultdict(list)
    for image in release.images:
        by_repo[image.repo].append(image)

    def push_repo(images: list[Image]) -> None:
        for image in images:
            push_image(image, registry)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(push_repo, imgs) for imgs in by_repo.values()]:
            future.result()
