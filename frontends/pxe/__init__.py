"""The PXE frontend: ``GET /pxe/{flavor}/{version}/{platform}-{arch}[-secureboot]`` iPXE scripts.

``app`` holds the route handler (one ``Build`` of the ``cmdline-…`` asset, one ``ReadAsset``)
and the pure script rendering (upstream's byte-exact templates, URLs under the external PXE URL).
"""
