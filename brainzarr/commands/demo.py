"""``brainzarr demo``: the main job on the built-in synthetic data."""
from __future__ import annotations

import time
from pathlib import Path

DEMO_GENES = ("APOE", "PVALB", "SST")


def run_demo(out_dir="store", *, genes=2000, seed=0, progress=True) -> dict:
    """Build an 8 mm synthetic store and export a few gene maps (NIfTI + PNG)."""
    from ..build import build_store
    from ..nifti import to_nifti
    from ..plots import plot_map
    from ..sources.abagen_data import study_gene_symbols
    from ..sources.table import resolve_genes
    from ..store import open_store

    out_dir = Path(out_dir)
    maps_dir = out_dir / "demo-maps"
    maps_dir.mkdir(parents=True, exist_ok=True)
    gene_list = sorted(set(resolve_genes(genes, study_gene_symbols())) | set(DEMO_GENES))
    store = build_store(out_dir / "demo-8mm.zarr", source="synthetic", resolution=8, genes=gene_list,
                        seed=seed, progress=progress)
    ds = open_store(store)
    written = {"store": store, "maps": []}
    for gene in DEMO_GENES:
        da = ds["expression"].sel(gene=gene)
        nii = maps_dir / f"{gene}.nii.gz"
        to_nifti(da).to_filename(nii)
        png = plot_map(da, maps_dir / f"{gene}.png", title=f"{gene} (synthetic, 8 mm)")
        written["maps"] += [nii, png]
    return written


def _run(args):
    from .info import describe

    start = time.perf_counter()
    written = run_demo(args.out_dir, genes=args.genes, seed=args.seed)
    print(describe(written["store"]))
    print("\nwrote:")
    for path in written["maps"]:
        print(f"  {path}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")


def register(sub):
    p = sub.add_parser("demo", help="build a synthetic 8 mm store and export gene maps")
    p.add_argument("--out-dir", default="store", help="where the demo writes (default: store/)")
    p.add_argument("--genes", type=int, default=2000, help="number of synthetic genes")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)
