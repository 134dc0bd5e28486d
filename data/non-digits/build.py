"""Builds data/non-digits/: images that are not digits, for the abstention measurements of
`mnist-kit non-digits`, the report and the tests. Needs Debian's chromium, chromium-driver and
fonts-dejavu (apt), and selenium (requirements-dev.txt). Deterministic for a seed: rerunning
rewrites the same files (given the same fonts and Chromium).

    python data/non-digits/build.py

Subsets, one folder each, files named `<kind>_<n>.png`, half of each subset drawn as the serve
page's pad draws (white ink on black, 280x280), half as ink on paper (dark on light, 160x160):
  blank/      no ink: white or black canvases, paper with a lighting gradient, faint sensor noise
  noise/      uniform, Gaussian and salt-and-pepper noise, speckle, hatched texture
  letters/    the 26 capital and 26 small Latin letters in DejaVu Sans and DejaVu Serif (some, such
              as O, l, S or Z, look like digits: they are in the set on purpose, because a
              reader meets them too)
  shapes/     filled and outlined squares, triangles, stars, hearts, arrows, crosses, hexagons,
              smileys
  scribbles/  random pen paths (smooth curves, zigzags, hatching, tangles)
"""

import base64
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

HERE = Path(__file__).resolve().parent
LETTER_FONTS = ["DejaVu Sans", "DejaVu Serif"]

# One function draws every image: (kind, variant, pad, seed) -> a PNG data URL.
RENDER = r"""
const [kind, variant, pad, seed] = arguments;
let s = seed >>> 0;
const rnd = () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296; };
const side = pad ? 280 : 160;
const c = document.createElement('canvas');
c.width = side; c.height = side;
const g = c.getContext('2d');
const ink = pad ? '#fff' : '#111';
g.fillStyle = pad ? '#000' : '#fff';
g.fillRect(0, 0, side, side);
const k = side / 160;
g.strokeStyle = ink; g.fillStyle = ink;
g.lineWidth = (pad ? 20 : 9 + 6 * rnd()); g.lineCap = 'round'; g.lineJoin = 'round';
g.save();
g.translate(side / 2 + (rnd() - 0.5) * 20 * k, side / 2 + (rnd() - 0.5) * 20 * k);
g.rotate((rnd() - 0.5) * 0.4);
const r = (45 + 20 * rnd()) * k;
function poly(n, rad, rot, star) {
  g.beginPath();
  const m = star ? 2 * n : n;
  for (let i = 0; i < m; i++) {
    const a = rot + 2 * Math.PI * i / m;
    const rr = star && i % 2 ? rad * 0.42 : rad;
    g.lineTo(rr * Math.cos(a), rr * Math.sin(a));
  }
  g.closePath();
}
function finish(filled) { if (filled) g.fill(); else g.stroke(); }
if (kind === 'blank') {
  g.restore();
  if (variant === 'gradient') {
    const grad = g.createLinearGradient(0, 0, side * rnd(), side);
    grad.addColorStop(0, 'rgb(240,236,228)'); grad.addColorStop(1, 'rgb(175,170,160)');
    g.fillStyle = grad; g.fillRect(0, 0, side, side);
  }
  if (variant === 'grain') {
    const im = g.getImageData(0, 0, side, side);
    for (let i = 0; i < im.data.length; i += 4) {
      const n = (rnd() - 0.5) * 12;
      for (let j = 0; j < 3; j++) im.data[i + j] = Math.max(0, Math.min(255, im.data[i + j] + n));
    }
    g.putImageData(im, 0, 0);
  }
} else if (kind === 'noise') {
  g.restore();
  const im = g.getImageData(0, 0, side, side);
  for (let i = 0; i < im.data.length; i += 4) {
    let v;
    if (variant === 'uniform') v = 255 * rnd();
    else if (variant === 'gaussian') {
      const u = Math.max(1e-9, rnd()), w = rnd();
      v = 128 + 60 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * w);
    } else if (variant === 'saltpepper') v = rnd() < 0.15 ? (rnd() < 0.5 ? 0 : 255) : im.data[i];
    else v = im.data[i];
    for (let j = 0; j < 3; j++) im.data[i + j] = Math.max(0, Math.min(255, v));
  }
  g.putImageData(im, 0, 0);
  if (variant === 'speckle') {
    for (let i = 0; i < 120; i++) {
      g.beginPath(); g.arc(side * rnd(), side * rnd(), (1 + 4 * rnd()) * k, 0, 2 * Math.PI); g.fill();
    }
  }
  if (variant === 'hatch') {
    g.lineWidth = 2 + 3 * rnd();
    const step = (8 + 8 * rnd()) * k, a = rnd() * Math.PI;
    for (let t = -side; t < 2 * side; t += step) {
      g.beginPath();
      g.moveTo(t, 0); g.lineTo(t + side * Math.cos(a), side * Math.sin(a) + side); g.stroke();
    }
  }
} else if (kind === 'letter') {
  g.font = `${112 * k}px "${variant[1]}"`;
  g.textAlign = 'center'; g.textBaseline = 'middle';
  g.fillText(variant[0], 0, 0);
  g.restore();
} else if (kind === 'shape') {
  const filled = variant.endsWith('filled');
  const v = variant.replace('-filled', '');
  if (v === 'square') poly(4, r, Math.PI / 4, false);
  else if (v === 'triangle') poly(3, r, -Math.PI / 2, false);
  else if (v === 'hexagon') poly(6, r, 0, false);
  else if (v === 'star') poly(5, r, -Math.PI / 2, true);
  else if (v === 'heart') {
    g.beginPath(); g.moveTo(0, r * 0.9);
    g.bezierCurveTo(-r * 1.6, -r * 0.1, -r * 0.6, -r * 1.2, 0, -r * 0.45);
    g.bezierCurveTo(r * 0.6, -r * 1.2, r * 1.6, -r * 0.1, 0, r * 0.9);
  } else if (v === 'arrow') {
    g.beginPath(); g.moveTo(-r, -r * 0.2); g.lineTo(r * 0.2, -r * 0.2); g.lineTo(r * 0.2, -r * 0.6);
    g.lineTo(r, 0); g.lineTo(r * 0.2, r * 0.6); g.lineTo(r * 0.2, r * 0.2); g.lineTo(-r, r * 0.2);
    g.closePath();
  } else if (v === 'cross') {
    const w = r * 0.3;
    g.beginPath();
    for (const [x, y] of [[-w, -r], [w, -r], [w, -w], [r, -w], [r, w], [w, w], [w, r], [-w, r],
                          [-w, w], [-r, w], [-r, -w], [-w, -w]]) g.lineTo(x, y);
    g.closePath();
  } else if (v === 'smiley') {
    g.beginPath(); g.arc(0, 0, r, 0, 2 * Math.PI); g.stroke();
    g.beginPath(); g.arc(-r * 0.35, -r * 0.3, r * 0.1, 0, 2 * Math.PI); g.fill();
    g.beginPath(); g.arc(r * 0.35, -r * 0.3, r * 0.1, 0, 2 * Math.PI); g.fill();
    g.beginPath(); g.arc(0, r * 0.1, r * 0.5, 0.15 * Math.PI, 0.85 * Math.PI);
  }
  finish(filled && v !== 'smiley');
  g.restore();
} else if (kind === 'scribble') {
  g.beginPath();
  let x = (rnd() - 0.5) * r, y = (rnd() - 0.5) * r;
  g.moveTo(x, y);
  const n = 4 + Math.floor(5 * rnd());
  for (let i = 0; i < n; i++) {
    const nx = (rnd() - 0.5) * 2.2 * r, ny = (rnd() - 0.5) * 2.2 * r;
    if (variant === 'zigzag') g.lineTo(nx, ny);
    else if (variant === 'hatching') {
      const y0 = -r + 2 * r * i / n; g.moveTo(-r, y0); g.lineTo(r, y0 + (rnd() - 0.5) * r * 0.4);
    } else {
      g.bezierCurveTo((rnd() - 0.5) * 2.4 * r, (rnd() - 0.5) * 2.4 * r,
                      (rnd() - 0.5) * 2.4 * r, (rnd() - 0.5) * 2.4 * r, nx, ny);
    }
  }
  if (variant === 'tangle') {
    for (let i = 0; i < 4; i++) {
      g.bezierCurveTo((rnd() - 0.5) * 2 * r, (rnd() - 0.5) * 2 * r,
                      (rnd() - 0.5) * 2 * r, (rnd() - 0.5) * 2 * r,
                      (rnd() - 0.5) * 2 * r, (rnd() - 0.5) * 2 * r);
    }
  }
  g.stroke();
  g.restore();
}
return c.toDataURL('image/png');
"""


def items():
    """Every image: (subset, file stem, kind, variant)."""
    out = []
    for i, v in enumerate(["plain", "plain", "gradient", "grain", "grain", "gradient"]):
        out.append(("blank", f"{v}_{i}", "blank", v))
    for v in ["uniform", "gaussian", "saltpepper", "speckle", "hatch"]:
        for i in range(4):
            out.append(("noise", f"{v}_{i}", "noise", v))
    for font in LETTER_FONTS:
        slug = font.lower().replace(" ", "-")
        for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
            case = "upper" if ch.isupper() else "lower"
            out.append(("letters", f"{ch}-{case}_{slug}", "letter", [ch, font]))
    for v in ["square", "triangle", "hexagon", "star", "heart", "arrow", "cross", "smiley"]:
        for filled in ["", "-filled"]:
            if v == "smiley" and filled:
                continue
            for i in range(3):
                out.append(("shapes", f"{v}{filled}_{i}", "shape", v + filled))
    for v in ["curve", "zigzag", "hatching", "tangle"]:
        for i in range(10):
            out.append(("scribbles", f"{v}_{i}", "scribble", v))
    return out


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--force-device-scale-factor=1"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def main():
    d = browser()
    try:
        d.get("data:text/html,<html><body></body></html>")
        missing = [f for f in LETTER_FONTS
                   if not d.execute_script(f"return document.fonts.check('20px \"{f}\"')")]
        if missing:
            sys.exit("fonts not installed: " + ", ".join(missing))
        for n, (subset, stem, kind, variant) in enumerate(items()):
            url = d.execute_script(RENDER, kind, variant, n % 2 == 0, 7919 * n + 17)
            path = HERE / subset / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(url.split(",", 1)[1]))
    finally:
        d.quit()
    for subset in ["blank", "noise", "letters", "shapes", "scribbles"]:
        print(f"{subset}: {len(list((HERE / subset).glob('*.png')))} images")


if __name__ == "__main__":
    main()
