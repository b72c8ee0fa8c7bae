"""Open a brainzarr report in headless Chromium and check that it renders.

    python scripts/check_report.py REPORT_DIR [--screenshot report.png] [--browser chromium]

Checks, on ``index.html`` and on every slice viewer it embeds (``viewers/*.html``):

* no script error and no ``console.error`` (a probe script, added to a temporary copy of each
  page in the same folder, records them from the first line of the page on);
* every ``<img>`` loaded (complete, with a width);
* every viewer initialised: brainsprite has sized its canvas to the slices and painted it;
  every ``<iframe>`` of the index points at a viewer that passed;
* the embedding scatters carry hover titles.

Then it saves a full-width screenshot of the index. Chromium runs with a throw-away profile and
no network services; the pages load from the file system. Exit status 0 when every check
passes, 1 otherwise; ``--json`` prints the probe results. Debian: ``apt-get install chromium``.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE_ID = "brainzarr-check"
# Runs before the page's own scripts: records errors, then after load (and brainsprite's own
# load handler) writes what it found into the DOM, which --dump-dom prints.
PROBE = """<script>
window.__bzErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__bzErrors.push(e.message ? String(e.message) : 'failed to load ' + (t.src || t.href || t.tagName));
}, true);
(function () {
  var original = console.error;
  console.error = function () {
    window.__bzErrors.push('console.error: ' + Array.prototype.slice.call(arguments).join(' '));
    return original.apply(console, arguments);
  };
})();
window.addEventListener('load', function () { setTimeout(function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return (i.getAttribute('src') || '').slice(0, 80); });
  var canvases = Array.prototype.slice.call(document.querySelectorAll('canvas')).map(function (c) {
    try {
      var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, painted = 0;
      for (var k = 3; k < d.length; k += 4) { if (d[k] > 0) { painted++; } }
      return {id: c.id, width: c.width, height: c.height, painted: painted};
    } catch (err) { return {id: c.id, error: String(err)}; }
  });
  var out = {
    errors: window.__bzErrors, images: images.length, broken: broken, canvases: canvases,
    iframes: Array.prototype.slice.call(document.querySelectorAll('iframe'))
                  .map(function (f) { return f.getAttribute('src'); }),
    hover_points: document.querySelectorAll('svg.scatter circle title').length,
    scatters: document.querySelectorAll('svg.scatter').length
  };
  var pre = document.createElement('pre');
  pre.id = 'PROBE_ID';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 500); });
</script>""".replace("PROBE_ID", PROBE_ID)


def find_browser(name: str | None = None) -> str | None:
    """The path of a Chromium-like browser: ``name`` if given, else the first of BROWSERS found."""
    for candidate in [name] if name else BROWSERS:
        path = shutil.which(candidate) if candidate else None
        if path:
            return path
    return None


def _chromium(browser: str, profile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


def probe(page: Path, browser: str, profile: Path, *, budget_ms: int = 10_000) -> dict:
    """Load a probed copy of ``page`` (beside it, so relative links resolve) and return what
    the probe found."""
    text = page.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", text, re.I)
    probed = text[: head.end()] + PROBE + text[head.end() :] if head else PROBE + text
    copy = page.with_name(f".check-{page.name}")
    copy.write_text(probed, encoding="utf-8")
    try:
        done = _chromium(browser, profile, f"--virtual-time-budget={budget_ms}", "--dump-dom", copy.resolve().as_uri())
    finally:
        copy.unlink(missing_ok=True)
    found = re.search(rf"<pre id=\"{PROBE_ID}\">(.*?)</pre>", done.stdout, re.S)
    if found is None:
        return {"errors": ["the page never finished loading (no probe result)"], "loaded": False}
    return {"loaded": True, **json.loads(html.unescape(found.group(1)))}


def screenshot(page: Path, png: Path, browser: str, profile: Path, *, width: int = 1280, height: int = 6000) -> Path:
    """A ``width`` x ``height`` screenshot of ``page``."""
    _chromium(
        browser,
        profile,
        "--virtual-time-budget=10000",
        f"--window-size={width},{height}",
        f"--screenshot={png.resolve()}",
        page.resolve().as_uri(),
    )
    return png


def problems_of(name: str, result: dict, *, viewer: bool) -> list[str]:
    """The failed checks of one page's probe result, as sentences."""
    out = [f"{name}: {e}" for e in result.get("errors", [])]
    out += [f"{name}: image not loaded: {src}" for src in result.get("broken", [])]
    if viewer:
        canvases = result.get("canvases", [])
        # brainsprite sizes its canvas to the slices; an untouched canvas keeps the 300 x 150 default
        if not any((c.get("width"), c.get("height")) not in ((300, 150), (None, None)) for c in canvases):
            out.append(f"{name}: the brainsprite viewer did not initialise")
        elif not any(c.get("painted", 0) > 0 for c in canvases):
            out.append(f"{name}: the viewer's canvas is blank")
    elif result.get("scatters", 0) and result.get("hover_points", 0) == 0:
        out.append(f"{name}: the embedding scatters have no hover titles")
    return out


def check_report(report_dir, *, screenshot_path=None, browser: str | None = None) -> dict:
    """Check a report folder in headless Chromium; see the module docstring.

    Returns ``{"ok": bool, "problems": [...], "pages": {name: probe result}, "screenshot": path}``.
    """
    report_dir = Path(report_dir)
    index = report_dir / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"{report_dir} has no index.html: not a brainzarr report folder")
    browser = find_browser(browser)
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (tried {', '.join(BROWSERS)}); Debian: apt-get install chromium")
    pages, problems = {}, []
    with tempfile.TemporaryDirectory(prefix="brainzarr-chromium-") as tmp:
        profile = Path(tmp) / "profile"
        pages["index.html"] = probe(index, browser, profile)
        problems += problems_of("index.html", pages["index.html"], viewer=False)
        for src in pages["index.html"].get("iframes", []):
            viewer = (report_dir / src).resolve()
            if not viewer.is_file():
                problems.append(f"index.html: frame {src} does not exist")
                continue
            pages[src] = probe(viewer, browser, profile)
            problems += problems_of(src, pages[src], viewer=True)
        png = Path(screenshot_path) if screenshot_path else report_dir / "screenshot.png"
        screenshot(index, png, browser, profile)
    return {"ok": not problems, "problems": problems, "pages": pages, "screenshot": png}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="a report folder (with index.html)")
    parser.add_argument("--screenshot", help="where to save the screenshot (default: REPORT/screenshot.png)")
    parser.add_argument("--browser", help="the browser executable (default: the first Chromium found)")
    parser.add_argument("--json", action="store_true", help="print every page's probe result")
    args = parser.parse_args(argv)
    try:
        result = check_report(args.report, screenshot_path=args.screenshot, browser=args.browser)
    except (FileNotFoundError, subprocess.SubprocessError) as err:
        print(f"check_report: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result["pages"], indent=1))
    index = result["pages"]["index.html"]
    viewers = len(result["pages"]) - 1
    print(
        f"index.html: {index.get('images', 0)} images, {viewers} viewers, "
        f"{index.get('hover_points', 0)} hoverable points; screenshot {result['screenshot']}"
    )
    for line in result["problems"]:
        print(f"FAIL {line}")
    print("OK: the report renders" if result["ok"] else f"{len(result['problems'])} problem(s)")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
