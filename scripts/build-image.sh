#!/usr/bin/env bash
# Builds the exporter as a static binary and the container image
# ghcr.io/aws-credentials-exporter/aws-credentials-exporter:VERSION (VERSION
# from Cargo.toml; IMAGE overrides the name). Needs podman (Debian: podman);
# the vfs storage driver works where overlay mounts are not allowed.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-ghcr.io/aws-credentials-exporter/aws-credentials-exporter}"
TARGET=x86_64-unknown-linux-gnu
BIN="target/$TARGET/release/aws-credentials-exporter"
# `cargo pkgid` ends in #VERSION or @VERSION, depending on the cargo release.
VERSION="$(cargo pkgid | sed 's/.*[#@]//')"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

# glibc, linked statically: FROM scratch has no libraries. Host names (say a
# --ntp.server name) still resolve: glibc >= 2.34 has its files and dns NSS
# modules built in. With an explicit --target, RUSTFLAGS apply to the binary
# only, not to build scripts. No symbols: the image has no debugger either.
RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked --target "$TARGET"
if ldd "$BIN" 2>&1 | grep -q '=>'; then
  echo "$BIN links shared libraries; the scratch image cannot run it" >&2
  ldd "$BIN" >&2
  exit 1
fi

podman --storage-driver=vfs build -f Containerfile \
  --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
  -t "$IMAGE:$VERSION" .
echo "built $IMAGE:$VERSION ($(podman --storage-driver=vfs image inspect "$IMAGE:$VERSION" --format '{{.Size}}') bytes)"
