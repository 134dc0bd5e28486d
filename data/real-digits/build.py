"""Builds data/real-digits/: digits that are not MNIST, for `mnist-kit real-digits`, the
report and the tests. Needs Debian's chromium, chromium-driver and the fonts named below (apt),
and selenium (requirements-dev.txt). Deterministic for a seed: rerunning rewrites the same
files (given the same fonts and Chromium).

    python data/real-digits/build.py [SERVE_URL]

Subsets, one folder each, files named `<digit>_<source>.png|jpg`:
  printed/      the ten digits in 12 printed typefaces (sans, serif, mono, geometric), black on
                white, drawn by Chromium's text renderer
  handwriting/  the ten digits in 14 handwriting typefaces: fonts made from people's own
                handwriting or lettering (DkgHandwriting, Breip, femkeklaver, Because We Had
                To's six hands, Humor Sans, Klee One, Dancing Script, Kaushan Script, Ecolier)
  photo/        the handwriting digits as a phone photo of paper would give them: off-white
                paper lit from one side, blue or pencil-grey ink, slight tilt and blur, sensor
                noise, JPEG
  drawn/        digits drawn with the mouse on the `mnist-kit serve` page (WebDriver drags
                along hand-authored pen paths, jittered), saved with the page's own Save PNG
                (only when SERVE_URL is given)
"""

import base64
import math
import random
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HERE = Path(__file__).resolve().parent
PRINTED = ["DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono", "Liberation Sans",
           "Liberation Serif", "Liberation Mono", "Nimbus Sans Narrow", "URW Gothic",
           "URW Bookman", "C059", "P052", "FreeSans"]
HANDWRITING = ["DkgHandwriting", "Breip", "femkeklaver", "Because We Build",
               "Because We Connect", "Because We Create", "Because We Learn", "Because We Mentor",
               "Because We Organize", "Humor Sans", "Klee One", "Dancing Script",
               "Kaushan Script", "Ecolier_court"]

RENDER = """
const [family, digit, photo, seed] = arguments;
let s = seed >>> 0;
const rnd = () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296; };
const c = document.createElement('canvas');
c.width = 160; c.height = 160;
const g = c.getContext('2d');
if (photo) {
  const grad = g.createLinearGradient(0, 0, 160 * rnd(), 160);
  const hi = 225 + 25 * rnd(), lo = 150 + 40 * rnd();
  grad.addColorStop(0, `rgb(${hi},${hi - 4},${hi - 12})`);
  grad.addColorStop(1, `rgb(${lo},${lo - 3},${lo - 10})`);
  g.fillStyle = grad;
} else {
  g.fillStyle = '#fff';
}
g.fillRect(0, 0, 160, 160);
g.save();
g.translate(80, 82);
if (photo) { g.rotate((rnd() - 0.5) * 0.3); g.filter = `blur(${0.4 + 0.8 * rnd()}px)`; }
g.fillStyle = photo ? (rnd() < 0.5 ? '#1b2a6b' : '#3a3a3a') : '#000';
g.font = `${photo ? 96 + 24 * rnd() : 112}px "${family}"`;
g.textAlign = 'center'; g.textBaseline = 'middle';
g.fillText(digit, 0, 0);
g.restore();
if (photo) {
  const im = g.getImageData(0, 0, 160, 160);
  for (let i = 0; i < im.data.length; i += 4) {
    const n = (rnd() - 0.5) * 22;
    for (let k = 0; k < 3; k++) im.data[i + k] = Math.max(0, Math.min(255, im.data[i + k] + n));
  }
  g.putImageData(im, 0, 0);
  return c.toDataURL('image/jpeg', 0.72);
}
return c.toDataURL('image/png');
"""

# Pen paths per digit, in pad units (the pad is 280x280 CSS pixels; offsets from its centre).
# Each path is one stroke; arcs are given as ("arc", cx, cy, rx, ry, from_deg, to_deg).
PATHS = {
    "0": [[("arc", 0, 0, 55, 85, -90, 275)]],
    "1": [[(-30, -60), (5, -95), (5, 95)]],
    "2": [[("arc", 0, -45, 55, 50, 200, 360), (45, -25), (-55, 90), (60, 90)]],
    "3": [[("arc", -5, -48, 50, 42, 210, 450), ("arc", -5, 42, 58, 48, 270, 500)]],
    "4": [[(25, -95), (-60, 40), (65, 40)], [(30, -40), (30, 100)]],
    "5": [[(50, -90), (-40, -90), (-48, -10), ("arc", 0, 40, 55, 50, 240, 480)]],
    "6": [[(35, -95), ("arc", 0, 40, 52, 52, 190, 540)]],
    "7": [[(-60, -85), (60, -85), (-10, 100)]],
    "8": [[("arc", 0, -50, 42, 42, 90, 450), ("arc", 0, 45, 52, 48, -90, 270)]],
    "9": [[("arc", 0, -45, 48, 45, 0, 360), (48, -45), (35, 100)]],
}


def points(stroke):
    out = []
    for p in stroke:
        if p[0] == "arc":
            _, cx, cy, rx, ry, a0, a1 = p
            n = max(8, int(abs(a1 - a0) / 12))
            for k in range(n + 1):
                a = math.radians(a0 + (a1 - a0) * k / n)
                out.append((cx + rx * math.cos(a), cy + ry * math.sin(a)))
        else:
            out.append(p)
    return out


def jittered(strokes, rng):
    s = rng.uniform(0.65, 1.05)
    rot = math.radians(rng.uniform(-12, 12))
    shear = rng.uniform(-0.2, 0.2)
    dx, dy = rng.uniform(-25, 25), rng.uniform(-20, 20)
    out = []
    for st in strokes:
        pts = []
        for x, y in points(st):
            x, y = x + shear * y, y
            x, y = x * math.cos(rot) - y * math.sin(rot), x * math.sin(rot) + y * math.cos(rot)
            pts.append((s * x + dx + rng.gauss(0, 2), s * y + dy + rng.gauss(0, 2)))
        out.append(pts)
    return out


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1300,1000", "--force-device-scale-factor=1"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def save(data_url, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data_url.split(",", 1)[1]))


def slug(family):
    return family.lower().replace(" ", "-").replace("_", "-")


def fonts(d):
    d.get("data:text/html,<html><body></body></html>")
    missing = [f for f in PRINTED + HANDWRITING
               if not d.execute_script(f"return document.fonts.check('20px \"{f}\"')")]
    # document.fonts.check is true for any installed family; warm them up with a draw.
    for f in PRINTED + HANDWRITING:
        d.execute_script(RENDER, f, "0", False, 1)
    for sub, families, photo, ext in [("printed", PRINTED, False, "png"),
                                      ("handwriting", HANDWRITING, False, "png"),
                                      ("photo", HANDWRITING, True, "jpg")]:
        for i, f in enumerate(families):
            for digit in "0123456789":
                url = d.execute_script(RENDER, f, digit, photo, 1000 * i + int(digit) + 7)
                save(url, HERE / sub / f"{digit}_{slug(f)}.{ext}")
    return missing


def drawn(d, url, per_digit=4, seed=2026):
    rng = random.Random(seed)
    d.get(url)
    WebDriverWait(d, 20).until(lambda d: d.execute_script(
        "return document.getElementById('model').options.length") > 0)
    pad = d.find_element(By.ID, "pad")
    for digit, strokes in PATHS.items():
        for k in range(per_digit):
            d.find_element(By.ID, "clear").click()
            for st in jittered(strokes, rng):
                chain = ActionChains(d).move_to_element_with_offset(pad, int(st[0][0]), int(st[0][1]))
                chain = chain.click_and_hold()
                for x, y in st[1:]:
                    chain = chain.move_to_element_with_offset(pad, int(x), int(y))
                chain.release().perform()
            time.sleep(0.2)
            save(d.execute_script("return document.getElementById('pad').toDataURL('image/png')"),
                 HERE / "drawn" / f"{digit}_drawn-{k + 1}.png")


def main():
    d = browser()
    try:
        missing = fonts(d)
        if missing:
            print("fonts not installed (Chromium fell back to another):", ", ".join(missing))
        if len(sys.argv) > 1:
            drawn(d, sys.argv[1])
    finally:
        d.quit()
    for sub in ["printed", "handwriting", "photo", "drawn"]:
        n = len(list((HERE / sub).glob("*"))) if (HERE / sub).exists() else 0
        print(f"{sub}: {n} images")


if __name__ == "__main__":
    main()
