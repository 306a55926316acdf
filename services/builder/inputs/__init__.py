"""What a build takes from outside, checked before it is used.

``catalogs`` is the builder's view of its peers over gRPC (the flavor document by ID, the
catalog's extensions and overlays); ``extract`` unpacks untrusted extension and overlay layers
defensively (path, size and type limits) and checks the extension structure.

May import the common package, the builder foundation (``errors``, ``tools``) and ``talos/``;
not ``formats/`` and no core module.
"""
