"""image-service common package: what the services, frontends and composition root share.

``settings`` (one frozen configuration object), ``logs`` (logging and the request id),
``errors`` (the error categories every service maps onto its transport), ``rpc`` (gRPC servers,
channels, the gRPC error table), ``flavor`` (the flavor document: model, decoder, canonical YAML
and ID), ``versions`` (Talos versions), ``oci`` (the registry client), ``imagefs`` (reading
files out of image layers), ``storage`` (content-addressed blob stores) and ``proto`` (the
generated gRPC contracts).

The bottom layer (common ← services ← frontends ← composition): it imports no service, no
frontend and not the composition root.
"""

__version__ = "0.1.0"
