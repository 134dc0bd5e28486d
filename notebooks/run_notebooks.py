"""Executes the notebooks headless with the evcxr kernel and fails on any cell error.

evcxr reports a compile error as a cell error, but a `?` on an `Err` or a panic only prints to
stderr: any stderr output that looks like an error fails the run too. Executed copies go to
OUT_DIR (default target/notebooks); the committed notebooks stay without outputs.
"""

import os
import re
import sys
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
            if text and (out.get("output_type") == "error" or FAILURE.search(text)):
                yield i, cell.source.splitlines()[0] if cell.source else "", text.strip()


def main():
    out_dir = Path(os.environ.get("OUT_DIR", ROOT / "target" / "notebooks"))
    out_dir.mkdir(parents=True, exist_ok=True)
    names = sys.argv[1:] or sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    failed = False
    for name in names:
        path = ROOT / "notebooks" / name
        nb = nbformat.read(path, as_version=4)
        started = time.time()
        client = NotebookClient(
            nb,
            kernel_name="rust",
            timeout=int(os.environ.get("CELL_TIMEOUT", "2400")),
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
        nbformat.write(nb, out_dir / name)
        shown = sum(len(c.get("outputs", [])) for c in nb.cells)
        print(f"{name}: {'FAILED' if bad else 'ok'} in {time.time() - started:.0f} s, {shown} outputs -> {out_dir / name}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
