"""EFI system partition images for boot tests, made with mtools only (no loop devices)."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["esp_drive", "make_esp"]


def make_esp(workdir: Path, files: dict[str, Path | bytes], name: str = "esp.img") -> Path:
    """A 64 MiB FAT32 image with ``files`` (ESP path → content), made with mtools only."""
    esp = workdir / name
    esp.unlink(missing_ok=True)
    with esp.open("wb") as f:
        f.truncate(64 << 20)
    subprocess.run(
        ["mformat", "-i", esp, "-F", "-T", "131072", "-h", "64", "-s", "32", "-v", "ESP", "::"],
        check=True,
    )
    dirs = sorted({str(Path(p).parent) for p in files} - {"."})
    made: set[str] = set()
    for d in dirs:
        parts = Path(d).parts
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in made:
                subprocess.run(["mmd", "-i", esp, f"::/{sub}"], check=True)
                made.add(sub)
    for dest, content in files.items():
        src = content
        if isinstance(content, bytes):
            src = workdir / f"esp-{Path(dest).name}"
            src.write_bytes(content)
        subprocess.run(["mcopy", "-i", esp, src, f"::/{dest}"], check=True)
    return esp


def esp_drive(esp: Path) -> list[str]:
    return ["-drive", f"file={esp},format=raw,if=virtio,snapshot=on"]
