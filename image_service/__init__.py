"""image-service common package: what the services and frontends share.

``settings`` (one frozen configuration object), ``logs`` (logging and the request id),
``errors`` (the error categories every service maps onto its transport), ``rpc`` (gRPC servers,
channels, the gRPC error table), ``web`` (HTTP middleware shared by the frontends), ``storage``
(content-addressed blob stores), ``proto`` (generated contracts) and ``cli``/``app`` (the
composition root that builds and runs the parts).
"""

__version__ = "0.1.0"
