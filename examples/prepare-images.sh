#!/usr/bin/env bash
# Puts the images the example configs name into examples/images/: Debian's
# kernel and the default busybox initramfs (downloaded once by guestprep and
# cached in $RXEN_CACHE or ~/.cache/rxen), as symlinks.
#
#   cd examples && ./prepare-images.sh && rxen create busybox.cfg
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(cd "$here/.." && cargo run -q --release -p guestprep --example prepare)"
kernel="$(awk '$1 == "kernel" {print $2}' <<<"$out")"
initramfs="$(awk '$1 == "initramfs" {print $2}' <<<"$out")"
mkdir -p "$here/images"
ln -sf "$kernel" "$here/images/vmlinuz"
ln -sf "$initramfs" "$here/images/busybox-initramfs.cpio"
echo "examples/images/vmlinuz                -> $kernel"
echo "examples/images/busybox-initramfs.cpio -> $initramfs"
