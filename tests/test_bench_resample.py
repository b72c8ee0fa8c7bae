"""scripts/bench_resample.py at a small scale: its reference is the box mean, which "mean" meets."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from scripts_loader import load_script  # noqa: E402


def test_bench_resample_measures_each_interpolation_against_the_box_mean(tmp_path, capsys):
    bench = load_script("bench_resample")
    out = tmp_path / "resample.json"
    bench.main(["--resolution", "8", "--images", "2:0,3:0.7", "--repeats", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["image_mm"], r["interpolation"]) for r in rows] == [
        (size, interpolation) for size in (2.0, 3.0) for interpolation in ("mean", "linear", "nearest")
    ]
    for r in rows:
        assert r["voxels"] == 3666 and r["wall_s"] > 0
        if r["interpolation"] == "mean":
            assert r["max_abs_error"] < 1e-6
        else:  # a centre's sample of noise finer than the voxel is not its mean
            assert r["mean_abs_error"] > 0.5 * r["box_mean_sd"]
    assert "| 3 mm, shift 0.7 mm | mean |" in capsys.readouterr().out


def test_the_reference_box_mean_of_a_constant_and_of_a_nested_image():
    from brainzarr.grid import mni152_grid

    bench = load_script("bench_resample")
    grid = mni152_grid(8)
    affine = grid.affine.copy()
    affine[:3, :3] /= 2
    affine[:3, 3] -= 2  # 4 mm voxels, 2 x 2 x 2 in each 8 mm one
    data = np.random.default_rng(0).random(tuple(2 * n for n in grid.shape))
    i, j, k = (2 * grid.ijk).T
    children = [data[i + a, j + b, k + c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    np.testing.assert_allclose(bench.box_mean(data, affine, grid), np.mean(children, axis=0), rtol=1e-12)
    np.testing.assert_allclose(bench.box_mean(np.ones_like(data), affine, grid), 1.0, rtol=1e-12)
