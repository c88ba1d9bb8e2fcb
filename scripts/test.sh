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
  [wrk]=wrk
  [prometheus-node-exporter]=prometheus-node-exporter
  [podman]=podman
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
fi

# botocore (PyPI): the reference peer of tests/botocore_parity.rs.
if ! python3 -c 'import botocore' >/dev/null 2>&1; then
  echo "installing: botocore (PyPI)"
  # A Debian python3 is "externally managed" (PEP 668): pip needs --break-system-packages there.
  python3 -m pip install --quiet 'botocore>=1.34' ||
    python3 -m pip install --quiet --break-system-packages 'botocore>=1.34'
  python3 -c 'import botocore'
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
