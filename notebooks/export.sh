#!/usr/bin/env bash
# Executes the four notebooks in full mode against the runs `cargo study` finished and writes
# them, outputs and all, to results/notebooks/: every figure carries a PNG (drawn by headless
# Chromium) next to its plotly JSON, so a git host shows them. One command after `cargo study`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p results/notebooks
MNIST_KIT_QUICK=0 MNIST_KIT_NOTEBOOK_PNG=1 OUT_DIR="$PWD/results/notebooks" \
    bash notebooks/run.sh "$@"
du -h results/notebooks/*.ipynb
