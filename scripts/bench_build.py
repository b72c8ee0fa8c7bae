"""Benchmark the build: time, write rate, peak memory and read speed at several resolutions,
and abagen's ``get_interpolated_map`` against brainzarr's ``idw`` build on the same samples.

Every configuration runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own.

    python scripts/bench_build.py                       # the issue's full set (needs ~30 GB disk)
    python scripts/bench_build.py --quick               # 8 mm and 4 mm, few genes: a smoke run
    python scripts/bench_build.py --configs 8:15633 4:15633 --abagen 4:50

Prints one Markdown table (paste it into the README's performance section).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULL_CONFIGS = ["8:15633", "4:15633", "2:15633", "1:1000"]
FULL_ABAGEN = ["4:50", "2:50"]


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM; ru_maxrss would carry the parent's over fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def run_build(resolution: int, genes: int, out: Path, assignment: str) -> dict:
    """One build + read timings, inside the child process."""
    import numpy as np

    from brainzarr import build_store, open_store

    start = time.perf_counter()
    build_store(out, resolution=resolution, genes=genes, assignment=assignment, random_state=0, progress=False)
    wall = time.perf_counter() - start
    build_peak = _peak_rss_mb()
    ds = open_store(out)
    n_vox, n_genes = ds.sizes["voxel"], ds.sizes["gene"]
    batch = ds["expression"].data.chunks[0][0]
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    a = int(rng.integers(0, max(1, n_vox - batch)))
    a -= a % batch
    np.asarray(ds["expression"][a : a + batch].values)
    row_batch = time.perf_counter() - t
    t = time.perf_counter()
    np.asarray(ds["expression"].isel(gene=int(rng.integers(n_genes))).values)
    gene_map = time.perf_counter() - t
    return {
        "resolution": resolution,
        "voxels": n_vox,
        "genes": n_genes,
        "assignment": assignment,
        "wall_s": wall,
        "data_mb": n_vox * n_genes * 4 / 1e6,
        "disk_mb": _disk_mb(out),
        "row_batch_rows": batch,
        "row_batch_s": row_batch,
        "gene_map_s": gene_map,
        "peak_rss_mb": build_peak,
        "read_peak_rss_mb": _peak_rss_mb(),
    }


def run_abagen(resolution: int, genes: int) -> dict:
    """abagen's get_interpolated_map (its own code) on the synthetic samples."""
    import abagen
    import numpy as np
    import pandas as pd
    from nilearn.datasets import load_mni152_brain_mask

    from brainzarr.sources.synthetic import load_synthetic

    table = load_synthetic(genes, random_state=0)
    # indexed by well_id as abagen's own samples are (its AtlasTree drops a zero label)
    index = pd.Index(table["sample"].values, name="well_id")
    expression = pd.DataFrame(table["expression"].values, columns=table["gene"].values, index=index)
    coords = pd.DataFrame(
        np.column_stack([table[c].values for c in "xyz"]), columns=["mni_x", "mni_y", "mni_z"], index=index
    )
    # abagen loads samples from downloaded donors; hand it ours instead (the rest is its code)
    abagen.allen.get_samples_in_mask = lambda mask=None, **kw: (expression, coords)
    mask = load_mni152_brain_mask(resolution=resolution)
    start = time.perf_counter()
    dense = abagen.get_interpolated_map(list(table["gene"].values), mask, n_neighbors=10)
    wall = time.perf_counter() - start
    # raw IDW values at the mask voxels, to check agreement with brainzarr
    nz = np.asarray(mask.dataobj) > 0
    sample = np.column_stack([dense[g][nz] for g in list(table["gene"].values)[:5]])
    np.save(os.environ["BENCH_ABAGEN_OUT"], sample)
    return {
        "resolution": resolution,
        "voxels": int(nz.sum()),
        "genes": genes,
        "assignment": "abagen idw",
        "wall_s": wall,
        "data_mb": nz.sum() * genes * 8 / 1e6,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _child(kind, resolution, genes, workdir, assignment="nearest") -> dict:
    env = dict(os.environ, BENCH_ABAGEN_OUT=str(Path(workdir) / "abagen.npy"))
    cmd = [sys.executable, __file__, "--child", kind, str(resolution), str(genes), str(workdir), assignment]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {resolution}mm {genes} genes failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _agreement(workdir: Path, resolution: int) -> float:
    """Pearson r between abagen's maps and brainzarr's idw store for the first 5 genes."""
    import numpy as np

    from brainzarr import open_store

    ours = open_store(workdir / f"idw-{resolution}.zarr")["expression"][:, :5].values
    theirs = np.load(workdir / "abagen.npy")
    return float(min(np.corrcoef(ours[:, g], theirs[:, g])[0, 1] for g in range(5)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=FULL_CONFIGS, help="RES:GENES builds (nearest)")
    p.add_argument("--abagen", nargs="*", default=FULL_ABAGEN, help="RES:GENES abagen vs brainzarr idw")
    p.add_argument("--quick", action="store_true", help="8 and 4 mm with 500 genes, abagen at 4 mm")
    p.add_argument("--workdir", help="where stores are written (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the stores")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, res, genes, workdir, assignment = args.child
        res, genes = int(res), int(genes)
        if kind == "build":
            out = Path(workdir) / f"{assignment}-{res}.zarr"
            shutil.rmtree(out, ignore_errors=True)
            result = run_build(res, genes, out, assignment)
        else:
            result = run_abagen(res, genes)
        print(json.dumps(result))
        return
    if args.quick:
        args.configs, args.abagen = ["8:500", "4:500"], ["4:50"]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-build-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for spec in args.configs:
            res, genes = map(int, spec.split(":"))
            r = _child("build", res, genes, workdir)
            rows.append(r)
            print(f"  built {res} mm x {genes} genes in {r['wall_s']:.1f} s", file=sys.stderr)
            if not args.keep:
                shutil.rmtree(workdir / f"nearest-{res}.zarr", ignore_errors=True)
        for spec in args.abagen:
            res, genes = map(int, spec.split(":"))
            ours = _child("build", res, genes, workdir, "idw")
            theirs = _child("abagen", res, genes, workdir)
            theirs["agreement_r"] = ours["agreement_r"] = _agreement(workdir, res)
            rows += [ours, theirs]
            print(f"  abagen vs idw at {res} mm done", file=sys.stderr)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(format_table(rows))


def format_table(rows) -> str:
    cpu = platform.processor() or platform.machine()
    head = (
        f"Machine: {os.cpu_count()} cores ({cpu}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
        f"Python {platform.python_version()}\n\n"
        "| resolution | voxels | genes | method | wall time (s) | MB/s written | store on disk (MB) | peak RSS (MB) "
        "| row batch read (s) | one gene map read (s) | peak RSS with reads (MB) | r vs abagen |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        rate = r["data_mb"] / r["wall_s"]
        batch = f"{r['row_batch_s']:.3f} ({r['row_batch_rows']} rows)" if "row_batch_s" in r else "-"
        gene_map = f"{r['gene_map_s']:.3f}" if "gene_map_s" in r else "-"
        disk = f"{r['disk_mb']:,.0f}" if "disk_mb" in r else "in memory"
        agree = f"{r['agreement_r']:.4f}" if "agreement_r" in r else "-"
        reads = f"{r['read_peak_rss_mb']:,.0f}" if "read_peak_rss_mb" in r else "-"
        lines.append(
            f"| {r['resolution']} mm | {r['voxels']:,} | {r['genes']:,} | {r['assignment']} | "
            f"{r['wall_s']:.1f} | {rate:,.0f} | {disk} | {r['peak_rss_mb']:,.0f} | {batch} | {gene_map} | "
            f"{reads} | {agree} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
