#!/usr/bin/env bash
# Runs the fuzz targets with cargo-fuzz (libFuzzer + AddressSanitizer) on the stable toolchain
# (RUSTC_BOOTSTRAP=1 lets it pass the nightly flags it needs).
#   bash mnist_kit/fuzz/run.sh                 # every target, 10 million executions each
#   RUNS=100000 bash mnist_kit/fuzz/run.sh idx # one target, a short run
# The corpus grows in mnist_kit/fuzz/corpus/<target>/; crashes land in artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10000000}"
if ! cargo install --list | grep -q "^cargo-fuzz "; then
    cargo install --locked cargo-fuzz --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx digit config checkpoint)
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    # A LeNet-5 checkpoint seed is 250 kB; the other inputs stay small.
    max_len=65536
    [ "$t" = checkpoint ] && max_len=300000
    echo "== $t: $RUNS executions"
    cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
        -runs="$RUNS" -rss_limit_mb=2048 -max_len="$max_len" -timeout=20 -print_final_stats=1
done
