"""The wizard's state: upstream's query parameters in, the current step and the schematic out.

Every step is a GET form that carries the earlier choices as hidden fields, so the whole state
lives in the query string (bookmarkable, no JavaScript needed). ``Choices.parse`` reads
upstream's parameter names (``target``, ``version``, ``platform``, ``board``, ``arch``,
``secureboot``, ``bootloader``, ``extensions``, ``cmdline``, ``cmdline-set``,
``overlay-options``); ``next_step`` names the first step whose answer is missing; ``document``
builds the schematic as upstream's wizard does (extensions sorted, kernel args split on
spaces). Checking the answers against the catalog happens in :mod:`frontends.http.ui.views`,
which has the catalog at hand; the pure rules live here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

__all__ = [
    "BOOTLOADERS",
    "MAX_CMDLINE_CHARS",
    "Choices",
    "Step",
    "Target",
    "cmdline_problem",
    "document",
    "next_step",
    "version_key",
]

MAX_CMDLINE_CHARS = 4096
MAX_OPTIONS_CHARS = 16384
BOOTLOADERS = ("auto", "dual-boot", "sd-boot", "grub")
NO_EXTENSIONS = "-"


class Target(StrEnum):
    METAL = "metal"
    CLOUD = "cloud"
    SBC = "sbc"


class Step(StrEnum):
    TARGET = "target"
    VERSION = "version"
    PLATFORM = "platform"
    BOARD = "board"
    ARCH = "arch"
    EXTENSIONS = "extensions"
    CUSTOMIZE = "customize"
    FINAL = "final"


# The query parameters each step sets: "Back" drops the previous step's and everything after.
STEP_PARAMS: dict[Step, tuple[str, ...]] = {
    Step.TARGET: ("target",),
    Step.VERSION: ("version",),
    Step.PLATFORM: ("platform",),
    Step.BOARD: ("board",),
    Step.ARCH: ("arch", "secureboot"),
    Step.EXTENSIONS: ("extensions", "search"),
    Step.CUSTOMIZE: ("cmdline", "cmdline-set", "bootloader", "overlay-options"),
    Step.FINAL: (),
}


def version_key(version: str) -> tuple[int, int, int]:
    core = version.removeprefix("v").split("-", 1)[0].split("+", 1)[0]
    parts = [*core.split("."), "0", "0", "0"][:3]
    try:
        major, minor, patch = (int(p) for p in parts)
    except ValueError:
        return (0, 0, 0)
    return (major, minor, patch)


def is_prerelease(version: str) -> bool:
    return "-" in version


@dataclass(frozen=True)
class Choices:
    """What the user chose so far; absent answers are ``None``."""

    target: str | None = None
    version: str | None = None  # with the leading "v", as the catalog spells it
    platform: str | None = None
    board: str | None = None
    arch: str | None = None
    secureboot: bool = False
    bootloader: str = "auto"
    extensions: tuple[str, ...] | None = None
    search: str = ""
    filtering: bool = False  # the filter box was submitted: stay on the extensions step
    cmdline: str = ""
    cmdline_set: bool = False
    overlay_options: str = ""

    @classmethod
    def parse(cls, query: QueryParams) -> Choices:
        def one(name: str) -> str | None:
            value = query.get(name)
            return value if value else None

        version = one("version")
        if version is not None and not version.startswith("v"):
            version = "v" + version
        extensions: tuple[str, ...] | None = None
        if "extensions" in query:
            extensions = tuple(
                sorted({e for e in query.getlist("extensions") if e and e != NO_EXTENSIONS})
            )
        return cls(
            target=one("target"),
            version=version,
            platform=one("platform"),
            board=one("board"),
            arch=one("arch"),
            secureboot=query.get("secureboot") == "true",
            bootloader=query.get("bootloader") or "auto",
            extensions=extensions,
            search=query.get("search", ""),
            filtering="filter" in query,
            cmdline=query.get("cmdline", ""),
            cmdline_set="cmdline-set" in query,
            overlay_options=query.get("overlay-options", ""),
        )

    def arch_or_default(self) -> str | None:
        return "arm64" if self.target == Target.SBC else self.arch

    def pairs(self, *, upto: Step | None = None) -> list[tuple[str, str]]:
        """The state as query pairs, keeping only the answers of steps before ``upto``."""
        dropped: set[str] = set()
        if upto is not None:
            order = list(Step)
            for step in order[order.index(upto) :]:
                dropped.update(STEP_PARAMS[step])
        out: list[tuple[str, str]] = []

        def add(name: str, value: str | None) -> None:
            if value is not None and name not in dropped:
                out.append((name, value))

        add("target", self.target)
        add("version", self.version.removeprefix("v") if self.version else None)
        add("platform", self.platform)
        add("board", self.board)
        add("arch", self.arch)
        if self.secureboot:
            add("secureboot", "true")
        if self.extensions is not None and "extensions" not in dropped:
            for name in self.extensions or (NO_EXTENSIONS,):
                out.append(("extensions", name))
        if self.cmdline_set:
            add("cmdline", self.cmdline)
            add("cmdline-set", "true")
            if self.bootloader != "auto":
                add("bootloader", self.bootloader)
            if self.overlay_options:
                add("overlay-options", self.overlay_options)
        return out


def steps_for(choices: Choices) -> list[Step]:
    steps = [Step.TARGET, Step.VERSION]
    if choices.target == Target.CLOUD:
        steps.append(Step.PLATFORM)
    if choices.target == Target.SBC:
        steps.append(Step.BOARD)
    else:
        steps.append(Step.ARCH)
    return [*steps, Step.EXTENSIONS, Step.CUSTOMIZE, Step.FINAL]


def next_step(choices: Choices) -> Step:
    """The first step whose answer is missing."""
    answered = {
        Step.TARGET: choices.target is not None,
        Step.VERSION: choices.version is not None,
        Step.PLATFORM: choices.platform is not None,
        Step.BOARD: choices.board is not None,
        Step.ARCH: choices.arch is not None,
        Step.EXTENSIONS: choices.extensions is not None and not choices.filtering,
        Step.CUSTOMIZE: choices.cmdline_set,
        Step.FINAL: False,
    }
    for step in steps_for(choices):
        if not answered[step]:
            return step
    return Step.FINAL


def previous_step(choices: Choices, step: Step) -> Step | None:
    steps = steps_for(choices)
    index = steps.index(step)
    return steps[index - 1] if index > 0 else None


def cmdline_problem(cmdline: str) -> str | None:
    """Why the kernel-args field cannot be used, or ``None``."""
    if len(cmdline) > MAX_CMDLINE_CHARS:
        return f"the kernel arguments are longer than {MAX_CMDLINE_CHARS} characters"
    if any(not ch.isprintable() for ch in cmdline):
        return "the kernel arguments contain control characters (newlines, tabs)"
    if cmdline.count('"') % 2:
        return "the kernel arguments contain an unbalanced double quote"
    return None


def kernel_args(cmdline: str) -> list[str]:
    """Upstream splits the field on single spaces; empty pieces (double spaces) are dropped."""
    return [arg for arg in cmdline.split(" ") if arg]


def document(
    choices: Choices,
    *,
    overlay: tuple[str, str] | None,
    overlay_options: object | None,
    bootloader_supported: bool,
) -> bytes:
    """The schematic as JSON (the flavor service decodes JSON and YAML alike)."""
    customization: dict[str, object] = {}
    args = kernel_args(choices.cmdline)
    if args:
        customization["extraKernelArgs"] = args
    if choices.extensions:
        customization["systemExtensions"] = {"officialExtensions": list(choices.extensions)}
    if bootloader_supported and choices.bootloader in BOOTLOADERS[1:]:
        customization["bootloader"] = choices.bootloader
    doc: dict[str, object] = {"customization": customization}
    if overlay is not None:
        image, name = overlay
        entry: dict[str, object] = {"image": image, "name": name}
        if overlay_options:
            entry["options"] = overlay_options
        doc["overlay"] = entry
    return json.dumps(doc).encode()


def query_string(pairs: Sequence[tuple[str, str]]) -> str:
    return urlencode(list(pairs))
