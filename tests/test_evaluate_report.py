"""The HTML report renders in a real browser (headless Chromium): slow, skipped without chromium.

Run with ``pytest -m slow tests/test_evaluate_report.py``. Debian: ``apt-get install chromium``.
The checks are ``scripts/check_report.py``'s (no console errors, every image loaded, every
slice viewer initialised, hover titles on the scatters, a screenshot).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from evaluate_fixtures import write_representations  # noqa: E402
from scripts_loader import load_script  # noqa: E402

pytestmark = pytest.mark.slow

checker = load_script("check_report")
needs_chromium = pytest.mark.skipif(
    checker.find_browser() is None, reason="needs a headless Chromium (Debian: apt-get install chromium)"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from brainzarr import build_store
    from brainzarr.evaluate import write_report, write_synthetic_targets

    tmp = tmp_path_factory.mktemp("report")
    store = build_store(tmp / "s8.zarr", resolution=8, genes=80, random_state=4)
    write_representations(store, methods=("pca", "nmf"), dims=(2, 4))
    write_representations(store, methods=("ica",), dims=(2,), reconstruct=())
    targets = write_synthetic_targets(tmp / "targets", store=store, resolution=4)
    index = write_report(
        store, tmp / "report", targets[0].parent, grid={"max_depth": [2, 3], "n_estimators": [20, 40]}, n_splits=3
    )
    return index.parent


@needs_chromium
def test_report_renders_in_chromium(report, tmp_path):
    import matplotlib.image

    result = checker.check_report(report, screenshot_path=tmp_path / "report.png")
    assert result["ok"], result["problems"]
    index = result["pages"]["index.html"]
    # three 2-D embeddings: two component viewers each, a gene, two reconstruction-error maps
    assert len(index["iframes"]) == 3 * 2 + 1 + 2 and len(result["pages"]) == 1 + len(index["iframes"])
    assert index["images"] >= 8 and index["broken"] == [] and index["errors"] == []
    from brainzarr import open_store
    from brainzarr.evaluate.viewers import MAX_SCATTER_POINTS

    n_voxels = open_store(report.parent / "s8.zarr").sizes["voxel"]
    drawn = min(n_voxels, MAX_SCATTER_POINTS)  # a seeded sample when the store has more voxels
    assert index["scatters"] == 3 and index["hover_points"] == 3 * drawn
    for name, page in result["pages"].items():
        if name != "index.html":
            assert max(c["painted"] for c in page["canvases"]) > 10_000, name

    shot = matplotlib.image.imread(result["screenshot"])
    assert shot.shape[:2] == (6000, 1280)
    rgb = (shot[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 2000  # figures, not a page of text
    top = shot[:400, :, :3]
    assert 0.6 < top.mean() < 0.99  # the title and tables on white, not an error page or a blank


@needs_chromium
def test_check_report_catches_a_broken_report(report, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(report, broken)
    index = broken / "index.html"
    page = index.read_text()
    page = page.replace("<img src='figures/rmse_vs_dim.png'", "<img src='figures/missing.png'", 1)
    index.write_text(page.replace("</body>", "<script>undefined_function();</script></body>"))
    viewer = sorted((broken / "viewers").glob("gene_*.html"))[0]
    viewer.write_text(
        viewer.read_text().replace("brain = brainsprite(", "console.error('no sprite'); brain = (function(){})(", 1)
    )

    result = checker.check_report(broken, screenshot_path=tmp_path / "b.png")
    assert not result["ok"]
    problems = "\n".join(result["problems"])
    assert "index.html: image not loaded: figures/missing.png" in problems
    assert "undefined_function" in problems
    assert f"viewers/{viewer.name}: console.error: no sprite" in problems
    assert f"viewers/{viewer.name}: the brainsprite viewer did not initialise" in problems
    assert sum(p.startswith("viewers/") for p in result["problems"]) == 2  # the other viewers pass
