"""The kernel command line: go-procfs' model and the imager's construction (talos-assets.md §5).

:class:`Cmdline` reproduces ``siderolabs/go-procfs``: an ordered list of keys, each with an
ordered list of values. Rendering walks the keys in order and prints every value as
``key=value`` (bare ``key`` for an empty value), so a key's values stay adjacent and a key left
without values prints nothing. ``set_all`` replaces keys in place; ``append_all`` appends, but
replaces *overwrite* keys in place and, with *delete_negated*, lets ``-key`` remove a key and
``-key=value`` remove one value. Both first join their arguments with spaces, re-split on
whitespace (no quoting) and group the values by key in order of first appearance — which is
why ``module.sig_enforce=0 -module.sig_enforce`` removes both tokens.

:func:`build_cmdline` follows the imager's ``buildCmdline`` (§5.2): ``talos.platform``, the
platform arguments (:mod:`.platforms`), ``talos.halt_if_installed=1`` on ISOs, the overlay's
arguments, the version's defaults (§5.4, from :mod:`.quirks`), ``lockdown=confidentiality``
under Secure Boot, the META token (:mod:`.meta`) unless the output is a disk image, and last
the schematic's ``extraKernelArgs`` with ``console`` and ``talos.platform`` as overwrite keys.
Which customisations an asset kind receives at all (api.md §6.5) is the caller's decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from image_service.versions import Version
from services.builder.errors import InvalidPath, go_quote
from services.builder.talos.meta import META_ENV_KEY, META_ENV_VAR, encode_meta
from services.builder.talos.platforms import Arch, get_platform
from services.builder.talos.quirks import Quirks, quirks_for

__all__ = [
    "OVERWRITE_KEYS",
    "Cmdline",
    "build_cmdline",
    "default_kernel_args",
    "secureboot_kernel_args",
]

PLATFORM_KEY = "talos.platform"
OVERWRITE_KEYS = ("console", PLATFORM_KEY)


def _group(args: Iterable[str]) -> dict[str, list[str]]:
    """Join, re-split on whitespace, split each token at its first ``=``, group by key."""
    grouped: dict[str, list[str]] = {}
    for token in " ".join(args).split():
        key, _, value = token.partition("=")
        grouped.setdefault(key, []).append(value)
    return grouped


class Cmdline:
    """An ordered, mutable kernel command line with go-procfs semantics."""

    def __init__(self, text: str = "") -> None:
        self._params: dict[str, list[str]] = _group([text])

    def __str__(self) -> str:
        return " ".join(
            key if value == "" else f"{key}={value}"
            for key, values in self._params.items()
            for value in values
        )

    def __repr__(self) -> str:
        return f"Cmdline({str(self)!r})"

    def keys(self) -> tuple[str, ...]:
        return tuple(self._params)

    def get(self, key: str) -> tuple[str, ...] | None:
        """The values of ``key`` (``("",)`` for a bare flag), or ``None`` if it is absent."""
        values = self._params.get(key)
        return None if values is None else tuple(values)

    def append(self, key: str, value: str) -> None:
        """Add a value to ``key``, or add ``key`` at the end."""
        self._params.setdefault(key, []).append(value)

    def set(self, key: str, values: Sequence[str]) -> None:
        """Replace all values of ``key`` in place, or add ``key`` at the end."""
        self._params[key] = list(values)

    def delete_all(self, key: str) -> None:
        """Remove ``key`` with all its values (a later append adds it at the end)."""
        self._params.pop(key, None)

    def delete(self, key: str, values: Sequence[str]) -> None:
        """Remove these values from ``key``; the key keeps its place even if left empty."""
        if key in self._params:
            self._params[key] = [v for v in self._params[key] if v not in values]

    def set_all(self, args: Iterable[str]) -> None:
        """``SetAll``: group ``args`` by key and replace each key in place."""
        for key, values in _group(args).items():
            self.set(key, values)

    def append_all(
        self,
        args: Iterable[str],
        *,
        overwrite: Iterable[str] = (),
        delete_negated: bool = False,
    ) -> None:
        """``AppendAll`` with go-procfs' ``WithOverwriteArgs`` and ``WithDeleteNegatedArgs``."""
        overwrite_keys = frozenset(overwrite)
        for key, values in _group(args).items():
            if delete_negated and len(key) > 1 and key.startswith("-"):
                target = key[1:]
                if values[0] == "":
                    self.delete_all(target)
                else:
                    self.delete(target, values)
            elif key in overwrite_keys:
                self.set(key, values)
            else:
                for value in values:
                    self.append(key, value)


def default_kernel_args(quirks: Quirks) -> tuple[str, ...]:
    """Talos' default kernel arguments for a target version, in order (talos-assets §5.4)."""
    args: list[str] = []
    if quirks.init_on_alloc:
        args.append("init_on_alloc=1")
    args += ["slab_nomerge", "pti=on", "consoleblank=0"]
    if not quirks.nvme_io_timeout_aws_only:
        args.append("nvme_core.io_timeout=4294967295")
    args.append("printk.devkmsg=on")
    if quirks.ima_args:
        args += ["ima_template=ima-ng", "ima_appraise=fix", "ima_hash=sha512"]
    if quirks.selinux:
        args.append("selinux=1")
    if quirks.module_sig_enforce:
        args.append("module.sig_enforce=1")
    if quirks.proc_mem_force_override:
        args.append("proc_mem.force_override=never")
    return tuple(args)


def secureboot_kernel_args(quirks: Quirks) -> tuple[str, ...]:
    """Arguments Secure Boot adds (talos-assets §13)."""
    return ("lockdown=confidentiality",) if quirks.secureboot_lockdown else ()


def build_cmdline(
    platform: str,
    arch: Arch,
    version: Version | None,
    *,
    secureboot: bool,
    iso: bool,
    overlay_args: Sequence[str] = (),
    meta: Sequence[tuple[int, str]] = (),
    extra_args: Sequence[str] = (),
    output_is_image: bool = False,
) -> str:
    """The kernel command line of an asset, built in the imager's order (talos-assets §5.2).

    ``version`` is the target (``None``: the newest); ``iso`` marks ISO output (and the UKI
    inside an ISO); ``overlay_args`` are the overlay installer's ``kernelArgs``; ``meta`` the
    schematic's ``(key, value)`` pairs, left out when ``output_is_image`` (they go to the META
    partition); ``extra_args`` the schematic's ``extraKernelArgs``.

    Raises ``InvalidPath`` (``invalid platform: "<name>"``) for a platform not in the table.
    """
    spec = get_platform(platform)
    if spec is None:
        raise InvalidPath(f"invalid platform: {go_quote(platform)}")
    quirks = quirks_for(version)

    cmdline = Cmdline()
    cmdline.append(PLATFORM_KEY, platform)
    cmdline.set_all(spec.kernel_args_for(arch, quirks))
    if iso and quirks.iso_halt_if_installed:
        cmdline.append("talos.halt_if_installed", "1")
    cmdline.set_all(overlay_args)
    cmdline.append_all(default_kernel_args(quirks))
    if secureboot:
        cmdline.append_all(secureboot_kernel_args(quirks))
    if meta and not output_is_image:
        encoded = encode_meta(meta, allow_gzip=quirks.compress_meta)
        cmdline.append(META_ENV_KEY, f"{META_ENV_VAR}={encoded}")
    cmdline.append_all(extra_args, overwrite=OVERWRITE_KEYS, delete_negated=True)
    return str(cmdline)
