"""scripts/bench_api_reads.py end to end at a tiny scale: every way of reading is measured."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from scripts_loader import load_script  # noqa: E402


def test_bench_api_reads_measures_every_way(tmp_path, capsys):
    bench = load_script("bench_api_reads")
    out = tmp_path / "api.json"
    bench.main(["--resolution", "8", "--genes", "40", "--repeats", "1", "--work", str(tmp_path), "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["input"] for r in rows] == [
        "ds.expression",
        "expression_rows(store)",
        'ds.brain.expression("train")',
        'ds.expression.where(ds.split == "train", drop=True)',
    ]
    assert all(r["pass_s"] > 0 and r["pca16_fit_s"] > 0 for r in rows)
    assert rows[0]["gb"] == rows[1]["gb"] > rows[2]["gb"] == rows[3]["gb"] > 0
    assert "| `ds.expression` |" in capsys.readouterr().out
