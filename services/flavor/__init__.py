"""Flavor service: flavor (upstream: schematic) documents, their canonical YAML and content ID.

``model`` holds the frozen document dataclasses, ``decode`` the strict YAML/JSON decoder,
``canonical`` the byte-exact canonical YAML emitter, ``storage`` the pluggable store and
``service`` the gRPC servicer that ties them together.
"""
