"""The OCI registry frontend: a read-only ``/v2/`` for installer images (api.md §10).

``app`` routes ``/v2`` and ``/v2/...`` to one handler that parses the path the way upstream
does and answers manifests, blobs and referrers of ``<image>/<flavor ID>`` repositories from
the builder's installer-image RPCs (built on the first pull of a tag, content-addressed after
that); ``errors`` is the frontend's one error table, which answers with OCI JSON error
envelopes carrying upstream's message texts.
"""
