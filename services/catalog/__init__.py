"""Catalog service: offered Talos versions and their official extensions and overlays.

``model`` parses the catalogue files (pure); ``catalog`` reads them from the release registry
through the OCI client and caches the results with a refresh interval (failures are never
cached, and concurrent misses share one fetch); ``service`` is the gRPC servicer.
"""
