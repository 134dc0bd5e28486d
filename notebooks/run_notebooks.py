"""Executes the notebooks headless with the evcxr kernel and fails on any cell error.

evcxr reports a compile error as a cell error, but a `?` on an `Err` or a panic only prints to
stderr, in the error's own words (candle's start with the message, not with "Error"): any
stderr output fails the run too (the kit writes nothing to stderr from a notebook). Executed copies go to
OUT_DIR (default target/notebooks); the committed notebooks stay without outputs.

`--warm` runs only the first code cell of 00_environment (the kit's `:dep` line): it compiles
the kit and its dependencies into the kernel's build cache once, so that later runs and
interactive sessions start in seconds.

The first cell of a notebook compiles (minutes on a cold cache): it gets FIRST_CELL_TIMEOUT
seconds (default 3600), every other cell CELL_TIMEOUT (default 1200). A line is printed every
30 s while a cell runs. After each notebook the kernelspec must still set CANDLE_NUM_THREADS=1.
"""

import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
# Lines evcxr prints for a failed cell (compile errors, `?` errors, panics).
FAILURE = re.compile(r"^(Error|error(\[E\d+\])?:|thread '.*' panicked|Child process terminated)", re.M)


def failures(nb):
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = ""
            if out.get("output_type") == "error":
                text = "\n".join([out.get("ename", ""), out.get("evalue", "")] + out.get("traceback", []))
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out.get("text", "")
            # Any stderr: evcxr prints a `?` error's Display there, whatever its words.
            if text and (out.get("output_type") in ("error", "stream") or FAILURE.search(text)):
                yield i, cell.source.splitlines()[0] if cell.source else "", text.strip()


class Client(NotebookClient):
    """nbclient with its own timeout for the first code cell and a progress line every 30 s."""

    def __init__(self, nb, name, **kw):
        super().__init__(nb, **kw)
        self.name = name
        self.first_timeout = int(os.environ.get("FIRST_CELL_TIMEOUT", "3600"))
        self.seen = 0

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code":
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        default = self.timeout
        if self.seen == 0:
            self.timeout = self.first_timeout
        self.seen += 1
        started = time.time()
        stop = threading.Event()

        def tick():
            while not stop.wait(30):
                line = cell.source.splitlines()[-1] if cell.source else ""
                print(f"  {self.name} cell {cell_index} ({line[:50]!r}): {time.time() - started:.0f} s", flush=True)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        finally:
            stop.set()
            self.timeout = default


def kernel_env_ok():
    """The kernelspec the run used still sets CANDLE_NUM_THREADS=1 (evcxr rewrites its
    kernel.json on a start when its version marker is missing)."""
    for base in os.environ.get("JUPYTER_PATH", "").split(os.pathsep):
        spec = Path(base) / "kernels" / "rust" / "kernel.json"
        if spec.exists():
            env = json.loads(spec.read_text()).get("env", {})
            return env.get("CANDLE_NUM_THREADS") == "1", spec
    return False, None


def main():
    args = [a for a in sys.argv[1:] if a != "--warm"]
    warm = "--warm" in sys.argv[1:]
    out_dir = Path(os.environ.get("OUT_DIR", ROOT / "target" / "notebooks"))
    out_dir.mkdir(parents=True, exist_ok=True)
    names = args or sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if warm:
        names = ["00_environment.ipynb"]
    failed = False
    for name in names:
        path = ROOT / "notebooks" / name
        nb = nbformat.read(path, as_version=4)
        if warm:
            first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
            nb.cells = nb.cells[: first + 1]
        started = time.time()
        client = Client(
            nb,
            name,
            kernel_name="rust",
            timeout=int(os.environ.get("CELL_TIMEOUT", "1200")),
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute()
        except CellExecutionError as e:
            print(f"{name}: cell error\n{str(e)[:3000]}", file=sys.stderr)
            failed = True
        bad = list(failures(nb))
        for i, first, text in bad:
            print(f"{name}: cell {i} ({first!r}) failed:\n{text[:3000]}", file=sys.stderr)
        failed |= bool(bad)
        ok, spec = kernel_env_ok()
        if not ok:
            print(f"{name}: the kernelspec {spec} lost CANDLE_NUM_THREADS=1", file=sys.stderr)
            failed = True
        if warm:
            print(f"kernel build cache warm in {time.time() - started:.0f} s")
            continue
        nbformat.write(nb, out_dir / name)
        shown = sum(len(c.get("outputs", [])) for c in nb.cells)
        print(f"{name}: {'FAILED' if bad else 'ok'} in {time.time() - started:.0f} s, {shown} outputs -> {out_dir / name}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
