"""bench_fit's PCA comparison table, with the loader rows (dim None) mixed in as --loaders adds them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from scripts_loader import load_script  # noqa: E402


def _bench_fit():
    return load_script("bench_fit")


def test_comparison_table_ratios_with_loader_rows():
    bench = _bench_fit()
    rows = [
        {"method": "pca", "res_mm": 4, "dim": 2, "fit_s": 10.0, "test_rmse": 0.15},
        {"method": "pca[ipca]", "res_mm": 4, "dim": 2, "fit_s": 120.0, "test_rmse": 0.153},
        {"method": "ae[train]", "res_mm": 4, "dim": 2, "rows_per_s": 1000.0},
        {"method": "ae[loader:stream]", "res_mm": 4, "dim": None, "rows_per_s": 9000.0, "ratio": 9.0},
        {"method": "ae[loader:memory]", "res_mm": 4, "dim": None, "rows_per_s": 70000.0, "ratio": 70.0},
    ]
    lines = bench.comparison_table(rows)
    assert len(lines) == 2  # header + the one PCA row
    cells = lines[1].split()
    assert cells[0] == "pca" and cells[6] == "12.0"  # ipca / ours fit time
    assert cells[-1] == "1.0200"  # ipca / ours test RMSE
