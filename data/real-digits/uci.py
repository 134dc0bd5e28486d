"""Adds data/real-digits/uci/: real handwriting from the UCI "Optical Recognition of Handwritten
Digits" set (E. Alpaydin and C. Kaynak, 1998; CC BY 4.0), as scikit-learn's wheel ships it
(`sklearn/datasets/data/digits.csv.gz`, 1,797 digits written by 13 of the set's 43 writers on
forms, scanned, and reduced to 8x8 counts of ink pixels, 0-16). No scikit-learn install is
needed: the file is read straight from the wheel.

    pip download --no-deps scikit-learn -d /tmp/skl
    python data/real-digits/uci.py /tmp/skl/scikit_learn-*.whl

Writes 30 digits per class (the first 30 of each class in the file's order, which mixes the
writers), each as dark ink on white paper: the 8x8 counts scaled to 0-255 and enlarged to 64x64
by bilinear interpolation (the kit's preprocessing then crops, scales and centres them like any
photo). Files are `uci/<digit>_uci-<row>.png`, `row` the digit's row in the CSV. Deterministic.
"""

import csv
import gzip
import io
import struct
import sys
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PER_CLASS = 30
SIDE = 64


def png(pixels, side):
    """An 8-bit grayscale PNG of `side` x `side` row-major values 0-255."""
    raw = b"".join(b"\x00" + bytes(pixels[r * side:(r + 1) * side]) for r in range(side))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    head = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def enlarge(cells):
    """8x8 ink counts (0-16) to SIDE x SIDE paper values (255 white, 0 full ink), bilinear."""
    out = []
    for y in range(SIDE):
        fy = min(max((y + 0.5) * 8 / SIDE - 0.5, 0.0), 7.0)
        y0 = int(fy)
        y1, wy = min(y0 + 1, 7), fy - int(fy)
        for x in range(SIDE):
            fx = min(max((x + 0.5) * 8 / SIDE - 0.5, 0.0), 7.0)
            x0 = int(fx)
            x1, wx = min(x0 + 1, 7), fx - int(fx)
            v = ((1 - wy) * ((1 - wx) * cells[y0 * 8 + x0] + wx * cells[y0 * 8 + x1])
                 + wy * ((1 - wx) * cells[y1 * 8 + x0] + wx * cells[y1 * 8 + x1]))
            out.append(255 - round(255 * v / 16))
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    with zipfile.ZipFile(sys.argv[1]) as z:
        text = gzip.decompress(z.read("sklearn/datasets/data/digits.csv.gz")).decode()
    taken = {d: 0 for d in range(10)}
    out = HERE / "uci"
    out.mkdir(exist_ok=True)
    for row, values in enumerate(csv.reader(io.StringIO(text))):
        cells, label = [int(float(v)) for v in values[:64]], int(float(values[64]))
        if taken[label] >= PER_CLASS:
            continue
        taken[label] += 1
        (out / f"{label}_uci-{row}.png").write_bytes(png(enlarge(cells), SIDE))
    print(f"uci: {sum(taken.values())} images")


if __name__ == "__main__":
    main()
