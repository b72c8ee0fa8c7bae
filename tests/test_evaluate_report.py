"""The HTML report renders in a real browser (headless Chromium): slow, skipped without chromium.

Run with ``pytest -m slow tests/test_evaluate_report.py``. Debian: ``apt-get install chromium``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from evaluate_fixtures import write_representations  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 6000, profile: Path) -> Path:
    """Render ``html`` with headless Chromium into ``png`` (fresh profile, no network services)."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--screenshot={png}",
        html.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return png


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_report_renders_in_chromium(tmp_path):
    import matplotlib.image

    from brainzarr import build_store
    from brainzarr.evaluate import write_report, write_synthetic_targets

    store = build_store(tmp_path / "s8.zarr", resolution=8, genes=80, random_state=4)
    write_representations(store, methods=("pca", "nmf"), dims=(2, 4))
    write_representations(store, methods=("ica",), dims=(2,), reconstruct=())
    targets = write_synthetic_targets(tmp_path / "targets", store=store, resolution=4)
    index = write_report(
        store, tmp_path / "report", targets[0].parent, grid={"max_depth": [2, 3], "n_estimators": [20, 40]}, n_splits=3
    )

    # a page with its text but no figures has few colours; the figures bring thousands
    bare = tmp_path / "bare.html"
    bare.write_text(index.read_text().replace("<img src='", "<img src='missing/"))
    shots = {
        name: matplotlib.image.imread(screenshot(page, tmp_path / f"{name}.png", profile=tmp_path / f"p-{name}"))
        for name, page in (("report", index), ("bare", bare))
    }

    def colours(img):
        rgb = (img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
        return len(np.unique(rgb, axis=0))

    shot = shots["report"]
    assert shot.shape[:2] == (6000, 1280)
    assert colours(shot) > 3 * colours(shots["bare"]) and colours(shot) > 2000
    # the top of the page is the title and tables on white, not an error page or a blank
    top = shot[:400, :, :3]
    assert 0.6 < top.mean() < 0.99
