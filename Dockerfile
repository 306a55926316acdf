# image-service: one image for every component; compose.yaml picks the component per container.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates \
      cpio xz-utils zstd squashfs-tools kmod mtools dosfstools xfsprogs fdisk qemu-utils \
      xorriso grub-common grub-pc-bin grub-efi-amd64-bin binutils sbsigntool efitools openssl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/image-service
COPY pyproject.toml README.md ./
COPY image_service ./image_service
COPY services ./services
COPY frontends ./frontends
COPY composition ./composition
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

RUN useradd --system --home-dir /var/lib/image-service --create-home image-service
USER image-service
ENV PATH=/opt/venv/bin:$PATH \
    IMAGE_SERVICE_DATA_DIR=/var/lib/image-service
EXPOSE 8080
ENTRYPOINT ["image-service"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
