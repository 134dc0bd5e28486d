"""Looks at the kit's pages in a real browser (Debian's headless Chromium, offline).

    browser_check.py serve URL            draw a 7 on the draw-a-digit page at URL; the answer and
                                          the 28x28 view must appear (and the answer be 7)
    browser_check.py pages FILE.html...   every plotly figure on every page must draw and no
                                          script may fail

Screenshots go to target/browser/. Exit status 1 on any failure.
"""

import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

OUT = Path(__file__).resolve().parent.parent / "target" / "browser"


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1300,1000",
                 "--allow-file-access-from-files"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def severe(driver):
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def check_serve(url):
    d = browser()
    try:
        d.get(url)
        WebDriverWait(d, 20).until(lambda d: d.execute_script(
            "return document.getElementById('model').options.length") > 0)
        pad = d.find_element(By.ID, "pad")
        # A 7: the top bar, then the diagonal down to the bottom left, as one drags a pen.
        # Offsets are from the pad's centre (280x280 CSS pixels).
        strokes = [[(-70, -80), (75, -80)], [(75, -80), (40, -10), (0, 100)]]
        for stroke in strokes:
            chain = ActionChains(d).move_to_element_with_offset(pad, *stroke[0]).click_and_hold()
            x, y = stroke[0]
            for nx, ny in stroke[1:]:
                for k in range(1, 9):
                    tx, ty = x + (nx - x) * k / 8, y + (ny - y) * k / 8
                    chain = chain.move_to_element_with_offset(pad, int(tx), int(ty))
                x, y = nx, ny
            chain.release().perform()
        # Wait until the answer shown is the one for the last stroke (asked 150 ms after it).
        time.sleep(0.6)
        WebDriverWait(d, 30).until(lambda d: d.execute_script(
            "const b = document.body.dataset; return b.asked !== '0' && b.asked === b.shown;"))
        time.sleep(0.3)
        answer = d.find_element(By.ID, "answer").text.strip()
        inked = d.execute_script("""
            const c = document.getElementById('input').getContext('2d');
            const px = c.getImageData(0, 0, 28, 28).data;
            let dark = 0;
            for (let i = 0; i < px.length; i += 4) if (px[i] < 128 && px[i + 3] > 0) dark++;
            return dark;""")
        bars = d.execute_script("return document.querySelectorAll('#bars .fill').length")
        OUT.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(OUT / "serve.png"))
        errors = severe(d)
        print(f"serve: answer {answer!r}, {inked} inked pixels in the 28x28 view, {bars} bars, "
              f"{len(errors)} script errors; screenshot {OUT / 'serve.png'}")
        ok = answer == "7" and inked > 20 and bars == 10 and not errors
        for e in errors:
            print("  " + e)
        return ok
    finally:
        d.quit()


def check_pages(files):
    d = browser()
    ok = True
    try:
        for i, f in enumerate(files):
            path = Path(f).resolve()
            d.get(path.as_uri())
            time.sleep(1.5)
            WebDriverWait(d, 60).until(lambda d: d.execute_script(
                "return document.readyState") == "complete")
            figures = d.execute_script("""
                const figs = [...document.querySelectorAll('.js-plotly-plot, .plotly-graph-div')];
                return figs.map(f => {
                    const svg = f.querySelector('svg.main-svg');
                    const drawn = svg ? svg.querySelectorAll('path, rect, image, text').length : 0;
                    return drawn;
                });""")
            empty = sum(1 for n in figures if n == 0)
            errors = severe(d)
            if i == 0:
                OUT.mkdir(parents=True, exist_ok=True)
                d.save_screenshot(str(OUT / f"{path.stem}.png"))
            status = "ok" if not empty and not errors else "FAILED"
            print(f"{path.name}: {len(figures)} figures, {empty} empty, {len(errors)} script errors: {status}")
            for e in errors[:5]:
                print("  " + e)
            ok &= not empty and not errors
    finally:
        d.quit()
    return ok


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("serve", "pages"):
        print(__doc__)
        sys.exit(2)
    ok = check_serve(sys.argv[2]) if sys.argv[1] == "serve" else check_pages(sys.argv[2:])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
