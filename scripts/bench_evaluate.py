"""Benchmark: wall time and peak RSS of the full evaluation (6 representations x N targets, random
and blocked split) at 8 mm and 4 mm.

    python scripts/bench_evaluate.py                      # 8 and 4 mm, 24 targets, default grid
    python scripts/bench_evaluate.py --resolutions 8 --targets 5 --jobs 2

Setup (not timed): a synthetic store per resolution; six 2-D representations - the store's own
fitted ones when it holds six (``brainzarr fit``), else six real scikit-learn fits on the
training voxels (PCA, NMF, FastICA, FactorAnalysis, TruncatedSVD, Gaussian random projection)
standing in for them (the evaluation's cost does not depend on which method made an embedding);
N target maps at 2 mm (the synthetic targets of several model seeds, as PET maps would be). Timed:
``run_evaluation`` (targets resampled onto the store, XGBoost grid search with 5-fold CV per
representation x target x split, statistics, tables) in a fresh subprocess, so that its peak RSS
is its own; then ``write_report`` (figures) in another.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SKLEARN_STANDINS = ("pca", "nmf", "ica", "fa", "tsvd", "randproj")


def fit_standins(store, seed=0):
    """Six real 2-D embeddings fitted on the training voxels, written like the models pipeline's."""
    import numpy as np
    import xarray as xr
    from sklearn.decomposition import NMF, PCA, FactorAnalysis, FastICA, TruncatedSVD
    from sklearn.random_projection import GaussianRandomProjection

    from brainzarr.store import open_store, voxel_coords, write_group

    ds = open_store(store)
    X = ds["expression"].values
    train = ds["split_random"].values == "train"
    models = {
        "pca": PCA(2, random_state=seed),
        "nmf": NMF(2, init="nndsvda", max_iter=200, random_state=seed),
        "ica": FastICA(2, random_state=seed),
        "fa": FactorAnalysis(2, random_state=seed),
        "tsvd": TruncatedSVD(2, random_state=seed),
        "randproj": GaussianRandomProjection(2, random_state=seed),
    }
    coords = {k: v for k, v in voxel_coords(ds).items() if k != "split"}
    for name, model in models.items():
        Z = model.fit(X[train]).transform(X).astype(np.float32)
        out = xr.Dataset({"embedding": (("voxel", "component"), Z)}, coords={**coords, "component": [1, 2]})
        write_group(
            store,
            f"representations/{name}/k2",
            out,
            overwrite=True,
            attrs={"method": name, "dim": 2, "seed": seed, "split_scheme": "random", "params": {}},
        )


def make_targets(out_dir, n):
    from brainzarr.evaluate.synthetic_targets import SYNTHETIC_TARGETS, write_synthetic_targets

    out_dir = Path(out_dir)
    done = sorted(out_dir.glob("*.nii.gz")) if out_dir.exists() else []
    if len(done) >= n:
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    made = 0
    for seed in range(100):
        # receptor_gradient does not depend on the seed: once is enough
        names = SYNTHETIC_TARGETS if seed == 0 else [n for n in SYNTHETIC_TARGETS if n != "receptor_gradient"]
        for path in write_synthetic_targets(out_dir / f"seed{seed}", random_state=seed, names=names):
            if made < n:
                path.rename(out_dir / f"{path.name.removesuffix('.nii.gz')}_s{seed}.nii.gz")
                made += 1
            else:
                path.unlink()
        (out_dir / f"seed{seed}").rmdir()
        if made >= n:
            return out_dir
    return out_dir


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries the parent's peak over
    exec into it, while VmHWM belongs to the process's own address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args):
    """Timed part, run in a fresh process: prints a JSON line."""
    start = time.perf_counter()
    if args.child == "evaluate":
        from brainzarr.evaluate import run_evaluation

        result = run_evaluation(
            args.store, args.targets_dir, args.out, n_jobs=args.jobs, grid=args.grid, progress=False
        )
        extra = {
            "models": len(result.prediction),
            "mean_r2": result.prediction.groupby("split")["r2"].mean().round(3).to_dict(),
        }
    else:
        from brainzarr.evaluate import write_report

        write_report(args.store, args.out)
        extra = {"figures": len(list(Path(args.out, "figures").glob("*.png")))}
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = _peak_rss_mb()
    # CPU seconds (all threads, imports included): the measure to trust on a shared machine
    print(
        json.dumps(
            {
                "wall_s": round(wall, 1),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                "peak_rss_mb": round(peak),
                **extra,
            }
        )
    )


def timed(step, store, targets_dir, out, jobs, grid):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        step,
        "--store",
        str(store),
        "--targets-dir",
        str(targets_dir),
        "--out",
        str(out),
        "--grid",
        grid,
    ] + (["--jobs", str(jobs)] if jobs else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BRAINZARR_PROGRESS": "0", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolutions", type=int, nargs="+", default=[8, 4])
    p.add_argument("--targets", type=int, default=24, help="number of target maps")
    p.add_argument("--genes", type=int, default=500)
    p.add_argument("--jobs", type=int, help="models fitted at once (default: the CPU count)")
    p.add_argument("--grid", default="default")
    p.add_argument("--work", default="store/bench-evaluate", help="where stores, targets and outputs go")
    p.add_argument("--no-report", action="store_true", help="time the evaluation only")
    p.add_argument("--child", choices=("evaluate", "report"), help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--targets-dir", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    from brainzarr import build_store
    from brainzarr.evaluate import find_representations

    work = Path(args.work)
    targets_dir = make_targets(work / f"targets-{args.targets}", args.targets)
    rows = []
    for res in args.resolutions:
        store = build_store(
            work / f"s{res}-g{args.genes}.zarr", resolution=res, genes=args.genes, random_state=0, progress=False
        )
        if len({r.method for r in find_representations(store, dims=(2,))}) < 6:
            fit_standins(store)
        n_vox = len(__import__("brainzarr").open_store(store)["voxel"])
        out = work / f"out-{res}mm"
        ev = timed("evaluate", store, targets_dir, out, args.jobs, args.grid)
        rep = None if args.no_report else timed("report", store, targets_dir, out, args.jobs, args.grid)
        rows.append((res, n_vox, ev, rep))
        print(f"{res} mm done: {ev} {rep or ''}", file=sys.stderr)

    print(
        f"\nevaluation of 6 representations x {args.targets} targets x 2 splits, grid '{args.grid}', "
        f"{args.jobs or os.cpu_count()} jobs, {os.cpu_count()} CPUs"
    )
    print(
        f"{'resolution':>10} {'voxels':>8} {'models':>7} {'evaluate s':>11} {'CPU s':>7} {'peak RSS MB':>12} "
        f"{'report s':>9} {'CPU s':>7} {'RSS MB':>7}  mean R² (random / blocked)"
    )
    for res, n_vox, ev, rep in rows:
        r2 = ev["mean_r2"]
        rep = rep or {}
        print(
            f"{res:>8} mm {n_vox:>8,} {ev['models']:>7} {ev['wall_s']:>11.1f} {ev.get('cpu_s', '-'):>7} "
            f"{ev['peak_rss_mb']:>12} {rep.get('wall_s', '-'):>9} {rep.get('cpu_s', '-'):>7} "
            f"{rep.get('peak_rss_mb', '-'):>7}  "
            f"{r2.get('random', float('nan')):.3f} / {r2.get('blocked', float('nan')):.3f}"
        )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (wall times stretch on a shared machine)")


if __name__ == "__main__":
    main()
