"""The three gRPC services of image-service: flavor, catalog and builder.

Each service package keeps a pure ``model`` (no I/O), a thin ``service`` module (the gRPC
servicer, the only place protobuf types appear) and pluggable ``storage``. Services never import
frontends; frontends never import services.
"""
