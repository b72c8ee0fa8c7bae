"""Benchmark the gene-conditioned INR on the synthetic source against nearest, IDW and kriging.

Phases, each in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own:

1. **fit**: load the synthetic table (3,702 real AHBA sites) and fit the INR on all samples;
2. **held-out**: spatial-block k-fold and leave-one-donor-out for every method (per-gene RMSE
   and Pearson r; the true field's own error against the held-out samples is the noise floor);
3. **maps** (optional): each method fitted on all samples, its map scored against the true
   field at every voxel of an MNI grid, and its agreement with the IDW map (secondary);
4. **render**: the fitted model streamed into a store (``render_store``) at each
   ``resolution:genes`` configuration; throughput in voxels x genes per second.

    python scripts/bench_inr.py                    # the issue's full run: all 15,633 genes, 2 mm all, 1 mm x 1000
    python scripts/bench_inr.py --small            # minutes: 500 genes, blocks only, 8 mm and 4 mm renders
    python scripts/bench_inr.py --genes 2000 --cv blocks --render 4:all --epochs 100

Prints Markdown tables (paste them into the README) and writes CSVs to ``--out``.
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

FULL_RENDER = ["2:all", "1:1000"]
SMALL_RENDER = ["8:all", "4:200"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _genes(n):
    return None if n in (None, 0, "all") else int(n)


def _inr_params(cfg):
    return {"max_epochs": cfg["epochs"], "random_state": cfg["seed"]}


# ------------------------------------------------------------------------------ child phases
def phase_fit(cfg) -> dict:
    from brainzarr.inr import GeneINR
    from brainzarr.sources import load_source

    t = time.perf_counter()
    table = load_source("synthetic", genes=_genes(cfg["genes"]), random_state=cfg["seed"])
    load_s = time.perf_counter() - t
    model = GeneINR(**_inr_params(cfg)).fit(table)
    model.save(cfg["model"], overwrite=True)
    return {
        "samples": table.sizes["sample"],
        "genes": table.sizes["gene"],
        "load_s": load_s,
        "fit_s": model.fit_seconds_,
        "epochs": cfg["epochs"],
        "solver": model.solver_,
        "final_loss": model.history_[-1],
        "peak_rss_mb": _peak_rss_mb(),
    }


def phase_heldout(cfg) -> dict:
    import pandas as pd

    from brainzarr.inr.evaluate import cross_validate
    from brainzarr.sources import load_source

    table = load_source("synthetic", genes=_genes(cfg["genes"]), random_state=cfg["seed"])
    frames, seconds = [], {}
    for cv in cfg["cv"]:
        for method in cfg["methods"]:
            t = time.perf_counter()
            df = cross_validate(
                table,
                methods=(method,),
                cv=cv,
                n_folds=cfg["folds"],
                block_mm=cfg["block_mm"],
                random_state=cfg["seed"],
                inr_params=_inr_params(cfg),
                progress=False,
            )
            seconds[f"{cv}/{method}"] = time.perf_counter() - t
            if any(f["method"].eq("true_field").any() and f["cv"].iloc[0] == cv for f in frames):
                df = df[df["method"] != "true_field"]
            frames.append(df)
    out = Path(cfg["out"]) / "heldout.csv"
    pd.concat(frames, ignore_index=True).to_csv(out, index=False)
    return {"csv": str(out), "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def phase_maps(cfg) -> dict:
    from brainzarr.grid import mni152_grid
    from brainzarr.inr.evaluate import make_method, map_scores, synthetic_truth
    from brainzarr.sources import load_source

    table = load_source("synthetic", genes=_genes(cfg["genes"]), random_state=cfg["seed"])
    t = time.perf_counter()
    fitted = {
        m: make_method(m, random_state=cfg["seed"], inr_params=_inr_params(cfg)).fit(table) for m in cfg["methods"]
    }
    maps = map_scores(fitted, mni152_grid(cfg["maps_resolution"]), table["gene"].values, truth=synthetic_truth(table))
    out = Path(cfg["out"]) / "maps.csv"
    maps.to_csv(out, index=False)
    return {"csv": str(out), "seconds": time.perf_counter() - t, "peak_rss_mb": _peak_rss_mb()}


def phase_render(cfg) -> dict:
    from brainzarr import open_store
    from brainzarr.inr.render import render_store

    store = Path(cfg["workdir"]) / f"inr-{cfg['resolution']}mm.zarr"
    t = time.perf_counter()
    render_store(
        cfg["model"],
        store,
        resolution=cfg["resolution"],
        genes=_genes(cfg["render_genes"]),
        overwrite=True,
        progress=False,
    )
    wall = time.perf_counter() - t
    ds = open_store(store)
    n_vox, n_genes = ds.sizes["voxel"], ds.sizes["gene"]
    result = {
        "resolution": cfg["resolution"],
        "voxels": n_vox,
        "genes": n_genes,
        "wall_s": wall,
        "voxel_genes_per_s": n_vox * n_genes / wall,
        "data_gb": n_vox * n_genes * 4 / 1e9,
        "disk_gb": _disk_mb(store) / 1e3,
        "peak_rss_mb": _peak_rss_mb(),
    }
    shutil.rmtree(store)
    return result


PHASES = {"fit": phase_fit, "heldout": phase_heldout, "maps": phase_maps, "render": phase_render}


def _child(phase: str, cfg: dict) -> dict:
    env = dict(os.environ, BRAINZARR_PROGRESS="0")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", phase, json.dumps(cfg)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- report
def _heldout_table(csv: str) -> str:
    import pandas as pd

    from brainzarr.inr.evaluate import summarize

    s = summarize(pd.read_csv(csv))
    lines = [
        "| cv | method | RMSE mean ± sd over genes | median [p10, p90] | Pearson r | vs IDW | genes better than IDW |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in s.itertuples():
        lines.append(
            f"| {r.cv} | {r.method} | {r.rmse_mean:.4f} ± {r.rmse_sd:.4f} | {r.rmse_median:.4f} "
            f"[{r.rmse_p10:.4f}, {r.rmse_p90:.4f}] | {r.pearson_r_mean:.3f} | {r.vs_idw_pct:+.1f} % | "
            f"{r.genes_better_than_idw:.0%} |"
        )
    return "\n".join(lines)


def _maps_table(csv: str, resolution: int) -> str:
    import pandas as pd

    m = pd.read_csv(csv).groupby("method", sort=False).mean(numeric_only=True)
    lines = [
        f"| method ({resolution} mm grid, fitted on all samples) | RMSE vs true field | r vs true field | "
        "r vs IDW map (secondary) |",
        "|---|---|---|---|",
    ]
    for name, r in m.iterrows():
        lines.append(f"| {name} | {r['rmse_vs_truth']:.4f} | {r['r_vs_truth']:.3f} | {r['r_vs_idw_secondary']:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="a few minutes: 500 genes, blocks only, small renders")
    p.add_argument("--genes", default=None, help="genes of the synthetic source (default: all 15,633)")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cv", default=None, help="blocks, donors or blocks,donors (default: both)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--block-mm", type=float, default=16.0)
    p.add_argument("--methods", default="inr,idw,nearest,kriging")
    p.add_argument("--maps-resolution", type=int, default=None, help="grid of the map scores in mm (0: skip)")
    p.add_argument("--render", nargs="*", default=None, help="resolution:genes configurations, e.g. 2:all 1:1000")
    p.add_argument("--out", default=None, help="folder for the CSVs (default: a temporary folder)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(PHASES[args.child[0]](json.loads(args.child[1])), default=float))
        return 0

    genes = args.genes or ("500" if args.small else "all")
    cv = (args.cv or ("blocks" if args.small else "blocks,donors")).split(",")
    render = args.render if args.render is not None else (SMALL_RENDER if args.small else FULL_RENDER)
    maps_res = args.maps_resolution if args.maps_resolution is not None else 8
    workdir = Path(tempfile.mkdtemp(prefix="bench-inr-"))
    out = Path(args.out) if args.out else workdir
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "genes": genes,
        "epochs": args.epochs,
        "seed": args.seed,
        "cv": cv,
        "folds": args.folds,
        "block_mm": args.block_mm,
        "methods": args.methods.split(","),
        "maps_resolution": maps_res,
        "model": str(workdir / "inr-model"),
        "workdir": str(workdir),
        "out": str(out),
    }
    started = time.perf_counter()
    import torch

    print(
        f"# bench_inr: synthetic source, {genes} genes, seed {args.seed}; "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}\n"
    )
    try:
        fit = _child("fit", cfg)
        print("## Training (all samples)\n")
        print("| samples | genes | epochs | solver | load s | fit s | peak RSS MB |\n|---|---|---|---|---|---|---|")
        print(
            f"| {fit['samples']:,} | {fit['genes']:,} | {fit['epochs']} | {fit['solver']} | {fit['load_s']:.1f} | "
            f"{fit['fit_s']:.1f} | {fit['peak_rss_mb']:.0f} |\n",
            flush=True,
        )

        held = _child("heldout", cfg)
        schemes = [
            f"{args.folds}-fold {args.block_mm:g} mm blocks" if c == "blocks" else "leave-one-donor-out" for c in cv
        ]
        print(
            f"## Held-out samples ({', '.join(schemes)}; true_field = the noise floor; inr_donor adds the "
            "held-out sample's donor offsets)\n"
        )
        print(_heldout_table(held["csv"]))
        print(
            "\ntime per method (all folds): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in held["seconds"].items())
            + f"; peak RSS {held['peak_rss_mb']:.0f} MB\n",
            flush=True,
        )

        if maps_res:
            maps = _child("maps", cfg)
            print(f"## Maps against the true field ({maps['seconds']:.0f} s)\n")
            print(_maps_table(maps["csv"], maps_res) + "\n", flush=True)

        if render:
            print("## Rendering (streamed into a store, clamped and scaled like any build)\n")
            print("| resolution | voxels | genes | wall s | voxels x genes / s | data GB | disk GB | peak RSS MB |")
            print("|---|---|---|---|---|---|---|---|")
            for spec in render:
                res, g = spec.split(":")
                r = _child("render", cfg | {"resolution": int(res), "render_genes": g})
                print(
                    f"| {r['resolution']} mm | {r['voxels']:,} | {r['genes']:,} | {r['wall_s']:.1f} | "
                    f"{r['voxel_genes_per_s']:.3g} | {r['data_gb']:.2f} | {r['disk_gb']:.2f} | "
                    f"{r['peak_rss_mb']:.0f} |",
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir / "inr-model", ignore_errors=True)
        if not args.out:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s" + (f"; CSVs in {out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
