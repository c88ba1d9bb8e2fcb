#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing,
# then runs every check. A missing tool is installed or the run fails: no test
# is skipped for want of a peer.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests drive as real peers.
# command -> package
declare -A PKG=(
  [curl]=curl
  [ip]=iproute2
  [unshare]=util-linux
  [timeout]=coreutils
  [script]=bsdutils
  [chronyd]=chrony
  [faketime]=faketime
  [ntpdig]=ntpsec-ntpdig
  [python3]=python3
  [promtool]=prometheus
  [prometheus]=prometheus
  [amtool]=prometheus-alertmanager
  [prometheus-alertmanager]=prometheus-alertmanager
  [chromium]=chromium
  [systemd-analyze]=systemd
  [systemd-nspawn]=systemd-container
  [nsenter]=util-linux
  [prlimit]=util-linux
  [wrk]=wrk
  [prometheus-node-exporter]=prometheus-node-exporter
)

missing=()
for cmd in "${!PKG[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG[$cmd]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Only the binaries are wanted: the Prometheus and Alertmanager packages would
  # start services listening on every interface. policy-rc.d (exit 101) tells
  # Debian's maintainer scripts not to start them; they stay disabled after.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
    created_policy=1
  fi
  # Sorted and de-duplicated: one package may provide two commands.
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -d /run/systemd/system ]; then
    for unit in prometheus prometheus-alertmanager prometheus-node-exporter; do
      # only the services of packages this run installed
      if printf '%s\n' "${missing[@]}" | grep -qx "$unit"; then
        $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
      fi
    done
  fi
  # Not kept for the tests: a booted container (tests/systemd_unit.rs) shares /usr.
  if [ "${created_policy:-0}" = 1 ]; then $SUDO rm -f "$policy"; fi
fi

# botocore (PyPI): the reference peer of tests/botocore_parity.rs.
if ! python3 -c 'import botocore' >/dev/null 2>&1; then
  echo "installing: botocore (PyPI)"
  # A Debian python3 is "externally managed" (PEP 668): pip needs --break-system-packages there.
  python3 -m pip install --quiet 'botocore>=1.34' ||
    python3 -m pip install --quiet --break-system-packages 'botocore>=1.34'
  python3 -c 'import botocore'
fi

# Kubernetes manifest checkers (tests/kubernetes.rs), pinned and cached in
# $TOOLS between runs; the test looks for them there.
TOOLS="${AWS_CREDENTIALS_EXPORTER_TOOLS:-$HOME/.cache/aws-credentials-exporter}"
export AWS_CREDENTIALS_EXPORTER_TOOLS="$TOOLS"
# kustomize from the Go module proxy: v5.8.2 is the newest whose go.mod accepts Go 1.26 (v5.8.3 needs 1.27).
KUSTOMIZE_VERSION=v5.8.2
if [ "$("$TOOLS/bin/kustomize" version 2>/dev/null)" != "$KUSTOMIZE_VERSION" ]; then
  echo "installing: kustomize $KUSTOMIZE_VERSION (Go module proxy)"
  GOBIN="$TOOLS/bin" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi
# kubernetes-validate (PyPI), in a venv of its own: it ships the API schemas up to Kubernetes 1.37.
KUBERNETES_VALIDATE_VERSION=1.37.0
if [ "$("$TOOLS/kubernetes-validate/bin/kubernetes-validate" --version 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  echo "installing: kubernetes-validate $KUBERNETES_VALIDATE_VERSION (PyPI)"
  rm -rf "$TOOLS/kubernetes-validate"
  python3 -m venv "$TOOLS/kubernetes-validate"
  "$TOOLS/kubernetes-validate/bin/pip" install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
# prometheus-operator schemas (npm), from the committed lock file; reinstalled when it changes.
if ! cmp -s tests/kubernetes/package-lock.json tests/kubernetes/node_modules/.installed-package-lock.json; then
  echo "installing: tests/kubernetes npm packages (npm ci)"
  npm --prefix tests/kubernetes ci --no-audit --no-fund --silent
  cp tests/kubernetes/package-lock.json tests/kubernetes/node_modules/.installed-package-lock.json
fi

# cargo-deb (crates.io), pinned: tests/systemd_unit.rs builds the Debian package
# with it. Installed once per machine (cargo's bin dir), again only on a version change.
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "installing: cargo-deb $CARGO_DEB_VERSION (crates.io)"
  cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi

export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets --no-fail-fast

# Fuzz each parser of untrusted input for a bounded time (scripts/fuzz.sh 60 for longer).
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

# Benchmark scripts in short mode, so they keep working (figures in README come from full runs).
BIN="$PWD/target/debug/aws-credentials-exporter" benches/ntp.sh 5
BIN="$PWD/target/debug/aws-credentials-exporter" benches/scrape.py --short
