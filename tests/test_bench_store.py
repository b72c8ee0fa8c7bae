"""scripts/bench_store.py end to end at a tiny scale: every column is measured and the table
says what the layouts are (files, bytes), whatever the machine's speed."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from scripts_loader import load_script  # noqa: E402


def test_bench_store_measures_every_layout_and_every_decode_stage(tmp_path):
    bench = load_script("bench_store")
    out = tmp_path / "bench.json"
    args = ["--resolution", "8", "--genes", "30", "--assignments", "idw", "--chunks", "512,8"]
    args += ["--layouts", "today,uint16-zstd-shards", "--repeats", "1", "--no-cold"]
    bench.main([*args, "--work", str(tmp_path / "work"), "--out", str(out)])
    result = json.loads(out.read_text())
    rows = {r["layout"]: r for r in result["rows"]}
    today, packed = rows["today"], rows["uint16-zstd-shards"]
    # 8 row blocks x 4 gene chunks, or 1 shard a row block; and the array's zarr.json
    assert today["files"] == 8 * 4 + 1 and packed["files"] == 8 + 1
    assert packed["disk_mb"] < today["disk_mb"]  # half the bytes before compression
    for row in rows.values():
        for key in ("pass_gbps", "zstd_gbps", "codec_gbps", "decode_gbps", "pass_vs_decode", "pass_vs_zstd"):
            assert row[key] > 0
        assert abs(row["pass_vs_decode"] - row["pass_gbps"] / row["decode_gbps"]) < 1e-9
    header = result["table"][2]
    assert "zstd alone" in header and "decode alone" in header and "pass / decode" in header
    assert len(result["table"]) == 4 + 2
    assert not (tmp_path / "work" / "r8-idw-uint16-zstd-shards").exists()  # the layouts' copies are removed
