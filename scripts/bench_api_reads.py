"""How fast the Python API's ways of handing a store to an estimator stream it.

    python scripts/bench_api_reads.py                         # 4 mm, all genes (builds the store)
    python scripts/bench_api_reads.py --store store/s4.zarr   # an existing store

For each way of writing "the expression" or "the training voxels' expression", the median of
``--repeats`` full passes (``brainzarr.streaming.stream_blocks``, what every estimator's pass
is) and one ``PCA(n_components=16).fit``:

* ``ds.expression``: what ``open_store`` gives;
* ``expression_rows(store)``: the array ``fit_store`` streams;
* ``ds.brain.expression("train")``: the training voxels, read in the store's row blocks;
* ``ds.expression.where(ds.split == "train", drop=True)``: the same voxels through xarray and
  dask's boolean indexing.

Prints a Markdown table (date, machine) and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path


def _pass(X) -> float:
    from brainzarr.streaming import reusing_buffers, stream_blocks

    start = time.perf_counter()
    with reusing_buffers():
        for _ in stream_blocks(X):
            pass
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="an existing store (default: build one at --resolution)")
    p.add_argument("--resolution", type=int, default=4)
    p.add_argument("--genes", default="all")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", default="store/bench-api")
    p.add_argument("--out", default="bench-out/bench_api_reads.json")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")

    import brainzarr
    from brainzarr.models import PCA
    from brainzarr.streaming import expression_rows

    store = Path(args.store) if args.store else Path(args.work) / f"s{args.resolution}.zarr"
    if not store.exists():
        genes = None if args.genes == "all" else int(args.genes)
        brainzarr.build_store(store, resolution=args.resolution, genes=genes, random_state=0, progress=False)
    ds = brainzarr.open_store(store)
    ways = {
        "ds.expression": lambda: ds.expression,
        "expression_rows(store)": lambda: expression_rows(store),
        'ds.brain.expression("train")': lambda: ds.brain.expression("train"),
        'ds.expression.where(ds.split == "train", drop=True)': lambda: ds.expression.where(
            ds.split == "train", drop=True
        ),
    }
    rows = []
    with brainzarr.set_options(progress=False):
        for name, make in ways.items():
            X = make()
            data = X.data if hasattr(X, "data") else X
            gb = data.shape[0] * data.shape[1] * 4 / 1e9
            seconds = statistics.median(_pass(data) for _ in range(args.repeats))
            start = time.perf_counter()
            PCA(n_components=16, random_state=0).fit(X)
            fit = time.perf_counter() - start
            rows.append({"input": name, "gb": gb, "pass_s": seconds, "gbps": gb / seconds, "pca16_fit_s": fit})
            print(json.dumps(rows[-1]), flush=True)
    table = [
        f"*{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({platform.machine()}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM; {store.name}: "
        f"{ds.sizes['voxel']:,} voxels x {ds.sizes['gene']:,} genes; pass = median of {args.repeats}*",
        "",
        "| input | float32 GB | pass s | pass GB/s | PCA k=16 fit s |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| `{r['input']}` | {r['gb']:.2f} | {r['pass_s']:.2f} | {r['gbps']:.2f} | {r['pca16_fit_s']:.1f} |"
            for r in rows
        ),
    ]
    print("\n".join(table))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "table": table}, indent=1))


if __name__ == "__main__":
    main()
