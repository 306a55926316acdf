"""The stateless Starlette frontends: HTTP API, PXE scripts and the OCI registry.

A frontend translates HTTP into gRPC calls on the services and streams the answers back. It never
imports service internals, touches storage or runs build tools. ``http``, ``pxe`` and
``registry`` never import each other; what they share lives in ``common``.
"""
