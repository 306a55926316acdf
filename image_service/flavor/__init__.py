"""The flavor (upstream: schematic) document: what every part must agree on, byte for byte.

``model`` holds the frozen document dataclasses, ``decode`` the strict YAML/JSON decoder,
``canonical`` the byte-exact canonical YAML emitter and the content ID, ``errors`` the
``InvalidFlavor`` error with upstream's messages. The private modules are the go-yaml
emulation: ``_compose`` (YAML syntax to nodes, the only PyYAML user), ``_resolve`` (what a plain
scalar means), ``_scalars`` and ``_emitter`` (how go-yaml writes), ``_keysort`` (go-yaml's map
key order) and ``_policy`` (behaviour that differs between upstream library versions).

The flavor service stores these documents; the builder decodes them to build assets. Like the
rest of the common package, nothing here imports a service or a frontend.
"""
