"""Fetch Debian packages of any suite and architecture without touching the host's apt state.

apt-get runs with private lists, cache and source list (verification.md §7, §9) under
``<downloads>/apt-<suite>/``; the archive URI comes from the host's own apt sources (deb822
``/etc/apt/sources.list.d/*.sources`` first, then one-line ``sources.list`` files), so no mirror
host is named in code. Downloaded ``.deb`` files are kept in ``<downloads>/debs/`` and what each
requested package resolved to is recorded in ``<downloads>/debs.json``: once a package is there,
later runs need neither apt nor the network.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.release.tools import ToolError, run, tool_env

__all__ = ["AptSource", "Deb", "DebCache", "extract_deb", "host_archive_source"]

APT_ETC = Path("/etc/apt")


@dataclass(frozen=True)
class AptSource:
    """The Debian archive the host uses: its URI and (optionally) the keyring it is signed with."""

    uri: str
    signed_by: str | None


@dataclass(frozen=True)
class Deb:
    package: str  # the requested name, e.g. linux-image-arm64 (a metapackage) or busybox-static
    resolved: str  # the real package downloaded, e.g. linux-image-6.1.0-41-arm64
    arch: str
    suite: str
    filename: str
    sha256: str


def _deb822_paragraphs(text: str) -> Iterable[dict[str, str]]:
    fields: dict[str, str] = {}
    last: str | None = None
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif raw[0] in " \t" and last is not None:
            fields[last] += "\n" + raw.strip()
        elif ":" in raw:
            key, _, value = raw.partition(":")
            last = key.strip().lower()
            fields[last] = value.strip()


def _is_main_suite(suite: str) -> bool:
    # bookworm, not bookworm-security / bookworm-updates / bookworm-backports
    return bool(suite) and "-" not in suite and "/" not in suite


def host_archive_source(apt_etc: Path = APT_ETC) -> AptSource:
    """The URI of the host's main Debian archive, read from its apt configuration."""
    for path in sorted((apt_etc / "sources.list.d").glob("*.sources")):
        for para in _deb822_paragraphs(path.read_text()):
            if para.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in para.get("types", "").split():
                continue
            if not any(_is_main_suite(s) for s in para.get("suites", "").split()):
                continue
            uris = para.get("uris", "").split()
            if not uris:
                continue
            signed_by = para.get("signed-by")
            if signed_by and "\n" in signed_by:
                signed_by = None  # an embedded key block: fall back to apt's trusted keys
            return AptSource(uris[0], signed_by)
    lists = [apt_etc / "sources.list", *sorted((apt_etc / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            m = re.match(
                r"^\s*deb\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)", line
            )
            if m and _is_main_suite(m["suite"]):
                opts = dict(o.split("=", 1) for o in (m["opts"] or "").split() if "=" in o)
                return AptSource(m["uri"], opts.get("signed-by"))
    raise ToolError(
        f"no Debian archive found in {apt_etc}/sources.list.d/*.sources or sources.list; "
        "the test release fetches kernels and busybox from the host's apt archive"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DebCache:
    """Resolves and downloads packages into ``root``; safe to call again (it then only reads)."""

    def __init__(self, root: Path, source: AptSource | None = None) -> None:
        self.root = root
        self.debs_dir = root / "debs"
        self.index_path = root / "debs.json"
        self._source = source
        self._updated: set[str] = set()
        self._index: dict[str, dict[str, str]] = (
            json.loads(self.index_path.read_text()) if self.index_path.exists() else {}
        )

    @staticmethod
    def _key(suite: str, package: str, arch: str) -> str:
        return f"{suite}/{package}:{arch}"

    def get(self, suite: str, package: str, arch: str) -> tuple[Deb, Path]:
        """The ``.deb`` for ``package`` (a metapackage resolves to its first dependency)."""
        key = self._key(suite, package, arch)
        entry = self._index.get(key)
        if entry is not None:
            path = self.debs_dir / entry["filename"]
            if path.is_file() and _sha256(path) == entry["sha256"]:
                return Deb(package=package, arch=arch, suite=suite, **entry), path
        deb = self._download(suite, package, arch)
        self._index[key] = {
            "resolved": deb.resolved,
            "filename": deb.filename,
            "sha256": deb.sha256,
        }
        tmp = self.index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._index, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.index_path)
        return deb, self.debs_dir / deb.filename

    # -- apt with private state -----------------------------------------------------------------

    def _apt_options(self, suite: str) -> list[str]:
        state = self.root / f"apt-{suite}"
        return [
            "-o", f"Dir::State::Lists={state / 'lists'}",
            "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "Dir::Cache::pkgcache=",
            "-o", "Dir::Cache::srcpkgcache=",
            "-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={state / 'sources.list.d'}",
            "-o", "Dir::State::status=/dev/null",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures::=amd64",
            "-o", "APT::Architectures::=arm64",
            "-o", "Acquire::Languages=none",
            "-o", "APT::Sandbox::User=root",
            "-o", "Debug::NoLocking=true",
        ]  # fmt: skip

    def _update(self, suite: str) -> None:
        if suite in self._updated:
            return
        source = self._source or host_archive_source()
        state = self.root / f"apt-{suite}"
        for d in ("lists/partial", "cache/archives/partial", "sources.list.d"):
            (state / d).mkdir(parents=True, exist_ok=True)
        opts = "arch=amd64,arm64" + (f" signed-by={source.signed_by}" if source.signed_by else "")
        (state / "sources.list").write_text(f"deb [{opts}] {source.uri} {suite} main\n")
        run(["apt-get", *self._apt_options(suite), "-q", "update"])
        self._updated.add(suite)

    def _resolve(self, suite: str, package: str, arch: str) -> str:
        """Follow a kernel metapackage (linux-image-amd64) to the real image package."""
        if not package.startswith("linux-image-") or re.match(r"linux-image-\d", package):
            return package
        out = run(["apt-cache", *self._apt_options(suite), "depends", f"{package}:{arch}"]).decode()
        for line in out.splitlines():
            m = re.match(r"^\s*\|?Depends:\s+(linux-image-\d\S*)", line)
            if m:
                return m.group(1).split(":")[0]
        raise ToolError(f"cannot resolve {package}:{arch} in {suite}:\n{out}")

    def _download(self, suite: str, package: str, arch: str) -> Deb:
        self._update(suite)
        resolved = self._resolve(suite, package, arch)
        self.debs_dir.mkdir(parents=True, exist_ok=True)
        spec = f"{resolved}:{arch}"
        uris = run(
            ["apt-get", *self._apt_options(suite), "download", "--print-uris", spec],
            cwd=self.debs_dir,
        ).decode()
        m = re.search(r"^'[^']+'\s+(\S+)\s+\d+\s+SHA256:([0-9a-f]{64})", uris, re.MULTILINE)
        if m is None:
            # apt prints nothing when the file is already in the working directory
            found = sorted(self.debs_dir.glob(f"{resolved}_*_{arch}.deb"))
            if not found:
                raise ToolError(f"apt-get download --print-uris {spec} printed no URI:\n{uris}")
            path = found[-1]
            return Deb(package, resolved, arch, suite, path.name, _sha256(path))
        filename, sha = m.group(1), m.group(2)
        path = self.debs_dir / filename
        if not (path.is_file() and _sha256(path) == sha):
            path.unlink(missing_ok=True)
            run(["apt-get", *self._apt_options(suite), "-q", "download", spec], cwd=self.debs_dir)
        if _sha256(path) != sha:
            raise ToolError(f"{path} does not match the archive's SHA256 {sha}")
        return Deb(package, resolved, arch, suite, filename, sha)


def extract_deb(deb: Path, dest: Path, select: Callable[[str], bool]) -> list[str]:
    """Extract the regular files of ``deb`` whose path (no leading ``./``) ``select`` accepts.

    Streams ``dpkg-deb --fsys-tarfile`` through Python's tarfile, so a kernel package is not
    unpacked whole (its module tree is ~400 MB). Returns the extracted paths, sorted.
    """
    dest.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    with subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tool_env(),
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for member in tf:
                name = member.name.removeprefix("./")
                if not member.isfile() or not select(name):
                    continue
                if name.startswith("/") or ".." in Path(name).parts:
                    raise ToolError(f"unsafe path {member.name!r} in {deb}")
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                assert src is not None
                with target.open("wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                target.chmod(member.mode & 0o755)
                done.append(name)
            # drain the rest so dpkg-deb does not die of SIGPIPE
            while proc.stdout.read(1 << 20):
                pass
        err = proc.stderr.read()
    if proc.returncode != 0:
        raise ToolError(f"dpkg-deb --fsys-tarfile {deb} failed: {err.decode(errors='replace')}")
    return sorted(done)
