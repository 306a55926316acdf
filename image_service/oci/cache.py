"""Content-addressed blob cache on the local filesystem.

Blobs live at ``<root>/sha256/<hex>``; a file under that name always holds exactly the bytes
that hash to it. Writers stage into ``<root>/tmp/`` (same filesystem), hash while writing, and
on ``commit()`` verify the digest, fsync, and ``os.replace`` the file into place, then fsync the
directory. Readers therefore never see partial content and need no locks, and several
processes may fill the same cache at once: when two download the same blob, both renames
install identical bytes. A staging file left by a crashed process is never visible under a
digest name and can be deleted at any time.

The writer is synchronous; ``RegistryClient`` calls it from a worker thread so hashing and
disk writes of large blobs stay off the event loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from image_service.oci.errors import DigestMismatch
from image_service.oci.names import validate_digest

__all__ = ["BlobCache", "BlobWriter"]


class BlobCache:
    """A directory of blobs named by their sha256 digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "sha256"
        self._staging = root / "tmp"

    def path_for(self, digest: str) -> Path:
        """Where the blob ``digest`` is (or would be) stored."""
        return self._blobs / validate_digest(digest).removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        """True if the blob is in the cache (and therefore complete and verified)."""
        return self.path_for(digest).is_file()

    def writer(self, digest: str, *, source: str = "") -> BlobWriter:
        """Stage a new blob that must hash to ``digest``; ``source`` is named in errors."""
        path = self.path_for(digest)
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)
        return BlobWriter(path, digest, self._staging, source)


class BlobWriter:
    """One staged blob: ``write`` chunks, then ``commit`` (or leave the ``with`` to discard)."""

    def __init__(self, target: Path, digest: str, staging: Path, source: str) -> None:
        self._target = target
        self._digest = digest
        self._source = source
        fd, name = tempfile.mkstemp(prefix=target.name[:16] + ".", dir=staging)
        self._temp = Path(name)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.written = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.written += len(chunk)

    def reset(self) -> None:
        """Forget everything written so far (a download that must start over)."""
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.sha256()
        self.written = 0

    def commit(self) -> Path:
        """Verify the digest and atomically install the blob; returns its cache path."""
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._digest:
            self.abort()
            where = f" from {self._source}" if self._source else ""
            raise DigestMismatch(
                f"blob {self._digest}{where} hashes to {actual} ({self.written} bytes); "
                "the content is corrupt or not what was asked for, so it was not cached",
                expected=self._digest,
                actual=actual,
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        os.fchmod(self._file.fileno(), 0o444)
        self._file.close()
        os.replace(self._temp, self._target)
        _fsync_dir(self._target.parent)
        return self._target

    def abort(self) -> None:
        """Discard the staged content (idempotent)."""
        self._file.close()
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._file.closed:
            self.abort()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)
