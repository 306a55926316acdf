"""The benchmark of image-service: speed, scale and memory, each next to a baseline.

``python -m bench`` (or ``scripts/bench``) runs everything once and writes
``bench/results/latest.json`` and ``latest.md``. The parts:

* ``stack`` — the system under test: the test suite's synthetic Talos release in a real local
  registry, and ``image-service serve`` processes pulling from it;
* ``rss`` — samples the memory of a service process and its children every 20 ms;
* ``baselines`` — the unavoidable work of each asset kind, run alone over the same bytes;
* ``builds``, ``downloads`` (with ``nginx``), ``dedup``, ``api``: sections 1 to 4;
* ``machine`` — what the numbers were measured on; ``report`` — ratios, tables, files;
* ``run`` — the order of it all, and the command line.

It reuses ``tests.release`` and ``tests.support``, so it runs from the repository root.
"""
