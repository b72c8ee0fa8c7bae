"""How time, memory and disk grow with the grid: build, PCA, NMF, one auto-encoder epoch and the
NIfTI exports at 8, 4, 2 and 1 mm, each step in a fresh process (peak RSS is that process's).

    python scripts/bench_scale.py                                  # 8, 4, 2, 1 mm, all genes, idw
    python scripts/bench_scale.py --resolutions 8,4 --genes 2000   # quicker
    python scripts/bench_scale.py --resolutions 1 --steps build --kill-and-resume

Steps (all on the same store; the fits use ``--no-reconstruction`` above 2 mm, where a
reconstruction would be as large as the expression):

* ``build``: synthetic source, ``--assignment idw`` (k = 10), the default layout;
* ``pca``: PCA k = 128 (streamed randomized SVD on the train split), with its test RMSE;
* ``nmf``: NMF k = 16, 10 passes;
* ``ae``: one epoch of the streaming auto-encoder, k = 16 (chunk-shuffled batches);
* ``export``: the 4-D PCA embedding and one gene's map as NIfTI, reloaded with nilearn; at 2 and
  1 mm also on FSL's standard grid of that voxel size (``like="MNI152_T1_1mm"``: 182 x 218 x 182);
* ``parcellate`` (not in the default steps): every gene's mean over each region of an atlas of
  20 mm cubes on the 2 mm grid (~350 regions hold brain voxels), one streamed pass;
* ``parcellate-volume`` (not in the default steps): the same cubes on the 1 mm grid, each voxel
  counted by the fraction of its volume in each cube (``weighting="volume"``).

Before each resolution the script estimates the store's size; when the disk cannot hold it, it
says how much is needed and runs with as many genes as fit (it never fills the disk). With
``--kill-and-resume`` the build is killed (SIGKILL) at a random point, run again, and checked
byte-identical against an uninterrupted build of a few genes on the same grid.

Prints a Markdown table (resolution x step x wall x peak RSS x disk x GB/s) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

GENES_ALL = 15633


def _child(step: str, cfg: dict) -> dict:
    """Run one step in this (child) process; return its measurements."""
    import numpy as np

    import brainzarr

    store = Path(cfg["store"])
    out: dict = {}
    t0 = time.perf_counter()
    if step == "build":
        brainzarr.build_store(
            store,
            resolution=cfg["resolution"],
            genes=cfg["genes"],
            assignment=cfg["assignment"],
            random_state=0,
            progress=cfg["progress"],
        )
        ds = brainzarr.open_store(store)
        out["voxels"], out["genes"] = ds.sizes["voxel"], ds.sizes["gene"]
        out["values_gb"] = ds.sizes["voxel"] * ds.sizes["gene"] * 4 / 1e9
    elif step in ("pca", "nmf", "ae"):
        params = {
            "pca": {},
            "nmf": {"max_epochs": 10},
            "ae": {"max_epochs": 1, "in_memory": False, "device": "cpu"},
        }[step]
        k = {"pca": 128, "nmf": 16, "ae": 16}[step]
        result = brainzarr.fit_store(
            store,
            step,
            k,
            overwrite=True,
            write_reconstruction=cfg["resolution"] >= 2,
            progress=cfg["progress"],
            **params,
        )
        out.update(
            k=k,
            train_rmse=float(result["rmse"].values[0]),
            test_rmse=float(result["rmse"].values[1]),
            fit_s=result.attrs["fit_seconds"],
            write_s=result.attrs["transform_seconds"],
            passes_fit=result.attrs.get("passes_fit"),
            passes_write=result.attrs.get("passes_write"),
        )
    elif step == "export":
        import nibabel as nib
        from nilearn.image import load_img

        ds = brainzarr.open_store(store)
        gene = str(ds["gene"].values[len(ds["gene"]) // 2])
        t1 = time.perf_counter()
        ds["expression"].sel(gene=gene).brain.to_nifti(store.parent / "gene.nii.gz")
        out["gene_map_s"] = time.perf_counter() - t1
        emb = brainzarr.read_group(store, "representations/pca/k128")["embedding"]
        emb = emb.assign_coords({c: ds[c] for c in ("i", "j", "k") if c not in emb.coords})
        emb.brain.to_nifti(store.parent / "pca-k128.nii.gz")
        img = load_img(str(store.parent / "pca-k128.nii.gz"))
        gimg = nib.load(store.parent / "gene.nii.gz")
        out["embedding_shape"] = list(img.shape)
        out["gene_shape"] = list(gimg.shape)
        out["affine_ok"] = bool(np.allclose(gimg.affine, np.asarray(ds.attrs["affine"])))
        fsl = {1: "MNI152_T1_1mm", 2: "MNI152_T1_2mm"}.get(cfg["resolution"])
        if fsl is not None:  # the same two files on FSL's standard grid of this voxel size
            t1 = time.perf_counter()
            ds["expression"].sel(gene=gene).brain.to_nifti(store.parent / "gene-fsl.nii.gz", like=fsl)
            out["fsl_gene_map_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            emb.brain.to_nifti(store.parent / "pca-k128-fsl.nii.gz", like=fsl)
            out["fsl_embedding_s"] = time.perf_counter() - t1
            fimg = load_img(str(store.parent / "pca-k128-fsl.nii.gz"))
            out["fsl_embedding_shape"] = list(fimg.shape)
            # every value lands at its own millimetre position: compare one component
            first = np.asarray(fimg.dataobj[..., 0])
            at = np.rint(np.linalg.solve(fimg.affine, np.c_[ds["x"], ds["y"], ds["z"], np.ones(len(ds["x"]))].T)[:3])
            out["fsl_exact"] = bool(np.array_equal(first[tuple(at.astype(int))], emb.isel(component=0).values))
    elif step in ("parcellate", "parcellate-volume"):
        ds = brainzarr.open_store(store)
        if step == "parcellate":
            table = ds["expression"].brain.parcellate(_cube_atlas(2))
        else:
            table = ds["expression"].brain.parcellate(_cube_atlas(1), weighting="volume")
        out["regions"] = int((table["n_voxels"].values > 0).sum())
        out["values_gb"] = ds.sizes["voxel"] * ds.sizes["gene"] * 4 / 1e9
    out["wall_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _cube_atlas(resolution: int):
    """Brain voxels of the MNI152 grid at ``resolution`` mm labelled by the 20 mm cube they lie in
    (1, 2, ...)."""
    import nibabel as nib
    import numpy as np

    from brainzarr.grid import mni152_grid

    grid = mni152_grid(resolution)
    cube = np.floor((grid.xyz + 100) / 20).astype(np.int64)
    _, labels = np.unique(cube[:, 0] * 10_000 + cube[:, 1] * 100 + cube[:, 2], return_inverse=True)
    vol = np.zeros(grid.shape, np.int16)
    vol[tuple(grid.ijk.T)] = labels + 1
    return nib.Nifti1Image(vol, grid.affine)


def _run_child(step: str, cfg: dict, timeout: float | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", step, "--cfg", json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def _estimate_genes(resolution: int, genes: int, assignment: str, work: Path) -> tuple[int, int]:
    """(genes that fit, bytes the full store needs) from a small build on the same grid."""
    import brainzarr

    probe = work / f"probe-{resolution}.zarr"
    n_probe = 256
    if probe.exists():
        shutil.rmtree(probe)
    brainzarr.build_store(probe, resolution=resolution, genes=n_probe, assignment=assignment, progress=False)
    per_gene = _disk_bytes(probe / "expression") / n_probe
    shutil.rmtree(probe)
    need = int(per_gene * genes * 1.05)
    free = shutil.disk_usage(work).free
    room = max(0, free - max(4 << 30, int(0.05 * shutil.disk_usage(work).total)))  # leave a margin
    return (genes if need <= room else max(128, int(room / per_gene / 1.05) // 128 * 128)), need


def _kill_and_resume(cfg: dict, work: Path) -> dict:
    """Kill the build at a random point, run it again, compare with an uninterrupted one."""
    import random

    import numpy as np
    import zarr

    small = dict(cfg, genes=min(cfg["genes"], 256))
    out = {}
    for name in ("killed", "whole"):
        path = work / f"{name}-{cfg['resolution']}.zarr"
        if path.exists():
            shutil.rmtree(path)
    killed, whole = work / f"killed-{cfg['resolution']}.zarr", work / f"whole-{cfg['resolution']}.zarr"
    _run_child("build", dict(small, store=str(whole)))
    cmd = [sys.executable, __file__, "--child", "build", "--cfg", json.dumps(dict(small, store=str(killed)))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # killed once a random share of the row blocks is written (a fixed delay can fall before the
    # first block: the grid and the interpolation weights come first)
    share = random.Random(0).uniform(0.1, 0.9)
    start = time.perf_counter()

    def blocks_done():
        try:
            done = np.asarray(zarr.open_array(str(killed / "build_chunk_done"), mode="r")[:])
        except Exception:  # not created yet
            return 0, 1
        return int(done.sum()), done.size

    while proc.poll() is None:
        done, total = blocks_done()
        if done >= share * total:
            break
        time.sleep(0.2)
    delay = time.perf_counter() - start
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done, total = blocks_done()
    _run_child("build", dict(small, store=str(killed)))
    a = zarr.open_array(str(killed / "expression"))[:]
    b = zarr.open_array(str(whole / "expression"))[:]
    out.update(
        killed_after_s=round(delay, 1), blocks_done_at_kill=done, blocks=total, identical=bool(np.array_equal(a, b))
    )
    shutil.rmtree(killed)
    shutil.rmtree(whole)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child")
    p.add_argument("--cfg")
    p.add_argument("--resolutions", default="8,4,2,1")
    p.add_argument("--genes", default="all")
    p.add_argument("--assignment", default="idw")
    p.add_argument("--steps", default="build,pca,nmf,ae,export")
    p.add_argument("--kill-and-resume", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the stores")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--work", default="store/bench-scale")
    p.add_argument("--out", default="bench-out/bench_scale.json")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, json.loads(args.cfg))), flush=True)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    genes_wanted = GENES_ALL if args.genes == "all" else int(args.genes)
    rows = []
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for res in [int(r) for r in args.resolutions.split(",")]:
        store = work / f"scale-{res}mm-{args.assignment}.zarr"
        genes, need = _estimate_genes(res, genes_wanted, args.assignment, work)
        note = ""
        if genes < genes_wanted:
            note = f"disk holds {genes} of {genes_wanted} genes (the full store needs ~{need / 1e9:.0f} GB)"
            print(f"# {res} mm: {note}", flush=True)
        cfg = {
            "store": str(store),
            "resolution": res,
            "genes": genes,
            "assignment": args.assignment,
            "progress": args.progress,
        }
        for step in args.steps.split(","):
            if step == "build" and store.exists() and not args.keep:
                shutil.rmtree(store)
            r = _run_child(step, cfg)
            r.update(resolution=res, step=step, genes=genes, note=note, disk_gb=_disk_bytes(store) / 1e9)
            if step in ("build", "parcellate", "parcellate-volume"):
                r["gbps"] = r["values_gb"] / r["wall_s"]
            elif step in ("pca", "nmf", "ae"):
                passes = (r.get("passes_fit") or 0) + (r.get("passes_write") or 0)
                gb = rows[0]["values_gb"] if rows and "values_gb" in rows[0] else None
                build = next((x for x in rows if x["resolution"] == res and x["step"] == "build"), None)
                gb = build["values_gb"] if build else gb
                r["gbps"] = (gb * passes / r["wall_s"]) if gb and passes else None
            rows.append(r)
            print(json.dumps(r), flush=True)
            out_path.write_text(json.dumps({"rows": rows}, indent=1))
        if args.kill_and_resume:
            r = _kill_and_resume(cfg, work)
            r.update(resolution=res, step="kill -9 + resume")
            rows.append(r)
            print(json.dumps(r), flush=True)
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
    table = [
        f"*{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({platform.machine()}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM; "
        f"assignment {args.assignment}; GB/s = float32 GB read or written per second*",
        "",
        "| resolution | step | genes | wall s | peak RSS MB | disk GB | GB/s | detail |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["step"] == "kill -9 + resume":
            detail = (
                f"killed after {r['killed_after_s']} s ({r['blocks_done_at_kill']} of {r.get('blocks', '?')} blocks "
                f"written); identical: {r['identical']}"
            )
            table.append(f"| {r['resolution']} mm | {r['step']} | | | | | | {detail} |")
            continue
        detail = {
            "build": lambda x: f"{x['voxels']:,} voxels",
            "parcellate": lambda x: f"{x['regions']} regions (20 mm cubes)",
            "parcellate-volume": lambda x: f"{x['regions']} regions (20 mm cubes, 1 mm atlas, volume-weighted)",
            "export": lambda x: f"gene map {x['gene_map_s']:.1f} s; {x['embedding_shape']}; affine ok {x['affine_ok']}"
            + (
                f"; FSL grid {x['fsl_embedding_shape']} in {x['fsl_embedding_s']:.0f} s (gene map "
                f"{x['fsl_gene_map_s']:.1f} s), values exact {x['fsl_exact']}"
                if "fsl_embedding_shape" in x
                else ""
            ),
        }.get(r["step"], lambda x: (
            f"k={x['k']} test RMSE {x['test_rmse']:.5f}; fit {x['fit_s']:.0f} s + write {x['write_s']:.0f} s; "
            f"passes {x['passes_fit']} + {x['passes_write']}"
        ))(r)  # fmt: skip
        gbps = "-" if not r.get("gbps") else f"{r['gbps']:.2f}"
        table.append(
            f"| {r['resolution']} mm | {r['step']} | {r['genes']:,} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['disk_gb']:.1f} | {gbps} | {detail} |"
        )
    print("\n".join(table))
    out_path.write_text(json.dumps({"rows": rows, "table": table}, indent=1))


if __name__ == "__main__":
    main()
