#!/usr/bin/env bash
# Sets up the notebooks: a Python venv (.venv) with the pinned Jupyter tooling, the evcxr
# Jupyter kernel (cargo install, skipped when the pinned version is already there) and its
# kernelspec inside the venv. Then: `.venv/bin/jupyter lab notebooks/`.
set -euo pipefail
cd "$(dirname "$0")/.."
EVCXR_VERSION=0.22.0

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
if cargo install --list | grep -q "^evcxr_jupyter v$EVCXR_VERSION:"; then
    echo "evcxr_jupyter $EVCXR_VERSION already installed"
else
    echo "installing evcxr_jupyter $EVCXR_VERSION (tens of minutes on 2 cores)"
    cargo install --locked evcxr_jupyter --version "$EVCXR_VERSION"
fi

# The kernelspec lives in the venv, so it needs no write to the user's Jupyter directories.
KERNEL_DIR=.venv/share/jupyter/kernels/rust
mkdir -p "$KERNEL_DIR"
cat > "$KERNEL_DIR/kernel.json" <<JSON
{
  "argv": ["$CARGO_BIN/evcxr_jupyter", "--control_file", "{connection_file}"],
  "display_name": "Rust",
  "language": "rust",
  "interrupt_mode": "message",
  "env": {"CANDLE_NUM_THREADS": "1"}
}
JSON
echo "kernel 'rust' registered in $KERNEL_DIR; start with: .venv/bin/jupyter lab notebooks/"
