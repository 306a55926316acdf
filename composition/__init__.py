"""The composition root: the one place that knows every part and wires them together.

``app`` builds the services, their stores and the frontends from the settings and runs them,
all in one process (``serve``) or one component per process (``run_component``, used by
``compose.yaml``); ``cli`` is the ``image-service`` command line. It sits above the layers
(common ← services ← frontends ← composition): it may import all of them, and nothing imports it.
"""
