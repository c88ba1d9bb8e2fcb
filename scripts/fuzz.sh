#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input (IMDS credential document, profile
# files, NTP replies) with proptest, SECONDS per target (default 60): batches
# of fresh random cases until the time is up. A failure prints the shrunk
# input and saves its seed under proptest-regressions/ (commit it); add the
# input itself to tests/corpus/<target>/ too, since seeds only mean the same
# input while the strategy is unchanged. `cargo test` alone runs
# PROPTEST_CASES (default 256) cases per property and replays the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
cargo test --locked --lib --no-run --quiet
for target in imds::document::fuzz chain::profile::fuzz ntp::fuzz; do
  echo "fuzzing ${target} for ${seconds}s"
  # The properties of one target run in parallel, each for the whole time.
  FUZZ_SECONDS="$seconds" PROPTEST_CASES="${PROPTEST_CASES:-1000}" \
    cargo test --locked --lib --quiet "${target}::fuzz_" -- --nocapture --test-threads 8 2>&1 |
    grep -E 'cases in|test result|panicked|failed|minimal failing input' -A12
done
