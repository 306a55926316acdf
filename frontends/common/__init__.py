"""What the frontends share: HTTP plumbing, the gRPC → HTTP error table and asset streaming.

``web`` (request-id middleware, bounded body reads, upstream's plain-text responses,
``Content-Disposition``), ``errors`` (gRPC status → HTTP status for the HTTP API and PXE) and
``downloads`` (single ``Range`` requests, ``ReadAsset`` chunks streamed to the client).

May import the common package (``image_service``) and third-party libraries only; every
frontend may import it, and it imports no frontend.
"""
