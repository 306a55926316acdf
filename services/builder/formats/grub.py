"""GRUB configuration text: the quoting and the ISO's ``grub.cfg`` (talos-assets.md §8.2, §5.8).

:func:`grub_quote` is Talos' ``grub.Quote``: a backslash before each of ``\\ { } & $ | ; < > "``
(the backslash itself first) and no surrounding quotes, so the kernel receives the command line
unchanged after GRUB's own unquoting. Nothing else is escaped, exactly like upstream: a ``'``
in the command line would still start a GRUB single-quoted word.

:func:`iso_grub_cfg` renders the ISO template byte for byte: ``set default=0`` (the normal
"Talos ISO" entry), a 3 s timeout, the firmware console as GRUB terminal, one tab of
indentation, and for targets with ``quirks.grub_reset_entry`` (≥ 1.4) a second entry "Reset Talos
installation" that appends ``talos.experimental.wipe=system``. The file then ends right after
the reset entry's ``}``; without it, it ends with ``}`` and an empty line. The kernel and
initramfs paths are the ISO's ``/boot/vmlinuz`` and ``/boot/initramfs.xz`` (the name says xz
even when the initramfs is zstd, as upstream).

Pure text, no I/O: :mod:`services.builder.formats.iso` writes it into the ISO tree.
"""

from __future__ import annotations

from services.builder.talos.quirks import Quirks

__all__ = [
    "ISO_INITRAMFS",
    "ISO_KERNEL",
    "ISO_RESET_TITLE",
    "ISO_RESET_WIPE",
    "ISO_TITLE",
    "grub_quote",
    "iso_grub_cfg",
]

ISO_KERNEL = "/boot/vmlinuz"
ISO_INITRAMFS = "/boot/initramfs.xz"
ISO_TITLE = "Talos ISO"
ISO_RESET_TITLE = "Reset Talos installation"
ISO_RESET_WIPE = "talos.experimental.wipe=system"

_SPECIAL = '\\{}&$|;<>"'  # backslash first, so later escapes are not escaped again


def grub_quote(text: str) -> str:
    """``text`` for a GRUB ``linux`` line: each GRUB metacharacter gets a backslash."""
    for char in _SPECIAL:
        text = text.replace(char, "\\" + char)
    return text


def _entry(title: str, args: str) -> str:
    return (
        f'menuentry "{title}" {{\n'
        "\tset gfxmode=auto\n"
        "\tset gfxpayload=text\n"
        f"\tlinux {ISO_KERNEL} {args}\n"
        f"\tinitrd {ISO_INITRAMFS}\n"
        "}\n"
    )


def iso_grub_cfg(cmdline: str, quirks: Quirks) -> str:
    """The ISO's ``boot/grub/grub.cfg`` for the kernel command line ``cmdline``."""
    quoted = grub_quote(cmdline)
    text = (
        "set default=0\n"
        "set timeout=3\n"
        "\n"
        "insmod all_video\n"
        "\n"
        "terminal_input console\n"
        "terminal_output console\n"
        "\n"
        f"{_entry(ISO_TITLE, quoted)}"
        "\n"
    )
    if quirks.grub_reset_entry:
        text += _entry(ISO_RESET_TITLE, f"{quoted} {ISO_RESET_WIPE}")
    return text
