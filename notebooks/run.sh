#!/usr/bin/env bash
# Runs every notebook headless with the evcxr kernel (after notebooks/setup.sh) and
# fails on any cell error. MNIST_KIT_QUICK=1 (the default here) shrinks data and epochs; set
# MNIST_KIT_QUICK=0 for the full study. Executed notebooks land in target/notebooks/.
set -euo pipefail
cd "$(dirname "$0")/.."
export MNIST_KIT_QUICK="${MNIST_KIT_QUICK:-1}"
# One persistent evcxr build directory: the dependency tree compiles once for all notebooks
# (they run one after another; two kernels must not share it at the same time).
# Outside the workspace (cargo would take the generated crate for a stray workspace member)
# and not under /root, where this machine refuses to dlopen the compiled cells.
export EVCXR_TMPDIR="${EVCXR_TMPDIR:-${TMPDIR:-/tmp}/mnist_kit-evcxr-$(id -u)}"
mkdir -p "$EVCXR_TMPDIR"
export JUPYTER_PATH="$PWD/.venv/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
exec .venv/bin/python notebooks/run_notebooks.py "$@"
