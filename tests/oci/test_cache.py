"""The content-addressed blob cache: atomic commits, verification, several processes."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from image_service.oci import BlobCache, DigestMismatch, InvalidReference
from tests.oci.layout import sha256

PAYLOAD = os.urandom(256 << 10)
DIGEST = sha256(PAYLOAD)


def test_commit_installs_verified_blob(cache: BlobCache) -> None:
    path = cache.path_for(DIGEST)
    assert path == cache.root / "sha256" / DIGEST.removeprefix("sha256:")
    assert not cache.has(DIGEST)
    with cache.writer(DIGEST) as writer:
        writer.write(PAYLOAD[:1000])
        assert not path.exists()  # nothing visible before the commit
        writer.write(PAYLOAD[1000:])
        assert writer.commit() == path
    assert cache.has(DIGEST) and path.read_bytes() == PAYLOAD
    assert list((cache.root / "tmp").iterdir()) == []


def test_reset_starts_over(cache: BlobCache) -> None:
    with cache.writer(DIGEST) as writer:
        writer.write(b"garbage from a transfer that was restarted")
        writer.reset()
        writer.write(PAYLOAD)
        writer.commit()
    assert cache.path_for(DIGEST).read_bytes() == PAYLOAD


def test_wrong_content_is_never_installed(cache: BlobCache) -> None:
    with cache.writer(DIGEST, source="127.0.0.1:5000/x") as writer:
        writer.write(b"wrong")
        with pytest.raises(DigestMismatch, match=r"from 127\.0\.0\.1:5000/x hashes to") as failed:
            writer.commit()
    assert failed.value.actual == sha256(b"wrong")
    assert not cache.has(DIGEST)
    assert list((cache.root / "tmp").iterdir()) == []


def test_abandoned_writer_leaves_nothing(cache: BlobCache) -> None:
    with pytest.raises(RuntimeError), cache.writer(DIGEST) as writer:
        writer.write(PAYLOAD[:10])
        raise RuntimeError("download cancelled")
    assert not cache.has(DIGEST)
    assert list((cache.root / "tmp").iterdir()) == []


def test_rejects_non_digests(cache: BlobCache) -> None:
    with pytest.raises(InvalidReference):
        cache.path_for("sha256:../../etc/passwd")


def _fill(root: str, payload: bytes, rounds: int) -> None:
    cache = BlobCache(Path(root))
    digest = sha256(payload)
    for _ in range(rounds):
        with cache.writer(digest) as writer:
            for start in range(0, len(payload), 4096):
                writer.write(payload[start : start + 4096])
            writer.commit()
        assert cache.path_for(digest).read_bytes() == payload  # readers never see partial data


def test_several_processes_fill_the_same_blob(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_fill, args=(str(tmp_path), PAYLOAD, 20)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=30)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    cache = BlobCache(tmp_path)
    assert cache.path_for(DIGEST).read_bytes() == PAYLOAD
    assert list((tmp_path / "tmp").iterdir()) == []
