"""Flavor service: stores flavor (upstream: schematic) documents under their content ID.

``storage`` keeps canonical YAML blobs in a ``BlobStore``; ``service`` is the gRPC servicer:
decode → canonicalize → ID → store, and lookups by ID. The document itself (model, strict
decoder, canonical YAML and ID) is shared with the builder and lives in
:mod:`image_service.flavor`; this package may import only the common package.
"""
