"""Builder service: from (flavor ID, Talos version, asset path) to a stored, boot-ready asset.

Layout, lowest layer first; each subpackage's ``__init__`` says what it may import::

    errors, tools   the foundation: error types with upstream's texts, the one way to run tools
    talos/          Talos rules as data and small functions: version quirks, platforms, the
                    asset path grammar, the kernel command line, META, Secure Boot signing
    inputs/         what comes from outside: the peers over gRPC (flavors, catalog) and the
                    defensive extraction of untrusted extension layers
    formats/        byte-level writers of each output: cpio/initramfs, PE/UKI, GPT, GRUB, ISO,
                    disk images and their conversions, installer image archives
    assets          the assemblers: one asset kind → the formats that build it
    pipeline        resolve inputs (flavor, catalog, release images) and plan a build
    scheduler       build each asset once: cache, single flight, queue, timeout
    registry_images multi-arch installer images for the OCI registry frontend
    service         the gRPC servicer; metrics: its Prometheus metrics

A new asset kind starts in ``talos/paths`` (its path) and ``assets`` (how it is put together);
a new file format is one module in ``formats/``. Subpackages never import the core modules
above them (``assets`` … ``service``), and the builder never imports another service.
"""
