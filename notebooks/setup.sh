#!/usr/bin/env bash
# Sets up the notebooks: a Python venv (.venv) with the pinned Jupyter tooling, the evcxr
# Jupyter kernel (cargo install, skipped when the pinned version is already there), its
# kernelspec inside the venv, and a warm build cache: the kit's first `:dep` cell is compiled
# once here, so opening a notebook afterwards takes seconds, not a long compile.
# Then: `.venv/bin/jupyter lab notebooks/`.
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
# evcxr's own installer writes it with the version marker it checks at every start (without
# the marker the first start rewrites kernel.json and drops our settings); then our settings.
KERNEL_DIR=.venv/share/jupyter/kernels/rust
JUPYTER_PATH="$PWD/.venv/share/jupyter" "$CARGO_BIN/evcxr_jupyter" --install >/dev/null
.venv/bin/python - "$KERNEL_DIR/kernel.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
# candle's own thread pool busy-waits after every op and competes with the kit's kernels.
spec["env"] = {"CANDLE_NUM_THREADS": "1"}
json.dump(spec, open(path, "w"), indent=2)
PY
echo "kernel 'rust' registered in $KERNEL_DIR (CANDLE_NUM_THREADS=1)"

# Compile the kit inside the kernel once (the first cell of 00_environment), with progress.
if [ "${MNIST_KIT_SKIP_WARM:-0}" != "1" ]; then
    echo "warming the kernel's build cache (the kit's :dep cell; minutes the first time)"
    bash notebooks/run.sh --warm
fi
echo "ready: .venv/bin/jupyter lab notebooks/"
