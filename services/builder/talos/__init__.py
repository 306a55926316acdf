"""Talos rules: what the factory must do for each Talos version, as data and small functions.

``quirks`` (every version-dependent behaviour, one table), ``platforms`` (the platform table),
``paths`` (the ``/image/<id>/<version>/<path>`` grammar), ``downloads`` (an asset's
``Content-Type``), ``cmdline`` (the kernel command line), ``meta`` and ``meta_adv`` (META values
on the command line and in the META partition) and ``secureboot`` (signing and enrolment).

May import the common package and the builder foundation (``services.builder.errors``,
``services.builder.tools``) only: no other builder subpackage and no core module.
"""
