"""Byte-level writers: one module per output format, each testable on its own.

``cpio`` and ``initramfs`` (the initramfs with extensions), ``pe`` and ``uki`` (unified kernel
images), ``gpt``, ``grub``, ``grubbios`` and ``disk`` (disk images), ``convert`` (raw → qcow2,
vhd and ova, then compression), ``iso`` (bootable ISOs) and ``installer`` (installer container
images as docker-archive tarballs).

May import the common package, the builder foundation (``errors``, ``tools``), ``talos/`` for
the rules a format follows and ``inputs/`` for extracted layers; no core module.
"""
