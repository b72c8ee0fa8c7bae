"""``brainzarr demo``: the whole pipeline on the built-in synthetic data.

1. build an 8 mm synthetic store (the real AHBA sample sites, a known generative model);
2. export a few gene maps as NIfTI and PNG;
3. fit all six representations (PCA, kernel PCA, NMF, t-SNE, UMAP, auto-encoder) at a few
   dimensions on the training voxels and write embeddings and reconstructions into the store;
4. export each method's 2-D embedding as a 4-D NIfTI;
5. evaluate: reconstruction RMSE tables, and XGBoost prediction of synthetic target maps made
   from the synthetic truth (:mod:`brainzarr.evaluate.synthetic_targets`) from the 2-D
   embeddings, under the random and the spatially blocked split;
6. write the HTML report.

Re-running it reuses what is already there (the store, fitted results), so an interrupted
demo picks up where it stopped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .._deprecation import renamed_kwargs
from ..exceptions import InputError
from ._args import int_list, mark_output, name_list

logger = logging.getLogger(__name__)

DEMO_GENES = ("APOE", "PVALB", "SST")
DEMO_METHODS = ("pca", "kpca", "nmf", "tsne", "umap", "ae")
DEMO_N_GENES = 1000
#: settings that keep the demo to about three minutes on 2 idle cores (the study's are larger)
DEMO_PARAMS = {"ae": {"max_epochs": 30, "patience": 10}, "tsne": {"n_iter": 250}}
#: what the demo takes on the project's 2-core machine, idle (measured: docs/benchmarks.md)
EXPECTED_SECONDS = 210


@renamed_kwargs(seed="random_state", progress=None)
def run_demo(
    out_dir="store",
    *,
    genes=DEMO_N_GENES,
    random_state=0,
    methods=DEMO_METHODS,
    dims=(2, 8),
    overwrite: bool = False,
    log=None,
) -> dict:
    """Run the pipeline into ``out_dir`` and return the paths written.

    A second run with the same settings reuses the store and its fits; with other ``genes`` or
    ``random_state`` it needs ``overwrite``, which replaces the demo's store and its fits.
    ``log`` (a callable taking one line) reports each step; default: the ``brainzarr`` logger.
    """
    from .._validation import SEED, whole_number
    from ..build import build_store
    from ..evaluate import run_evaluation, write_report, write_synthetic_targets
    from ..exceptions import ResultExistsError
    from ..models.store_fitting import check_methods, check_n_components, fit_store, result_group
    from ..nifti import write_nifti
    from ..plots import plot_map
    from ..sources.abagen_data import study_gene_symbols
    from ..sources.table import resolve_genes
    from ..store import open_store, read_group, refuse_output_in_a_store

    log = log or logger.info
    seed = whole_number(random_state, "random_state", hint=SEED)
    check_methods(methods, "the demo", also=("xgboost",))  # before anything is written
    if 2 not in dims:
        raise InputError(f"the demo predicts its targets from 2-D embeddings: its dims must include 2, got {dims}")
    refuse_output_in_a_store(out_dir)
    gene_list = sorted(set(resolve_genes(genes, study_gene_symbols())) | set(DEMO_GENES))
    for method in methods:
        check_n_components(method, max(dims), len(gene_list), where="the demo's store")
    log(
        f"brainzarr demo: about {EXPECTED_SECONDS // 60} minutes on 2 idle cores (longer on a busy machine); "
        f"interrupted, it resumes where it stopped. Writing into {out_dir}/"
    )

    out_dir = Path(out_dir)
    maps_dir = out_dir / "demo-maps"
    maps_dir.mkdir(parents=True, exist_ok=True)
    written = {"maps": [], "embeddings": []}

    log(f"[1/6] building an 8 mm synthetic store with {genes} genes")
    store = build_store(
        out_dir / "demo-8mm.zarr",
        source="synthetic",
        resolution=8,
        genes=gene_list,
        random_state=seed,
        overwrite=overwrite,
        discard_results=overwrite,  # the demo's own fits, made with the other settings
    )
    written["store"] = store
    ds = open_store(store)

    log("[2/6] exporting gene maps")
    for gene in DEMO_GENES:
        da = ds["expression"].sel(gene=gene)
        nii = maps_dir / f"{gene}.nii.gz"
        write_nifti(da, nii)
        written["maps"] += [nii, plot_map(da, maps_dir / f"{gene}.png", title=f"{gene} (synthetic, 8 mm)")]

    log(f"[3/6] fitting {', '.join(methods)} at dims {', '.join(map(str, dims))}")
    for method in methods:
        for dim in dims:
            start = time.perf_counter()
            try:
                result = fit_store(store, method, dim, random_state=seed, **DEMO_PARAMS.get(method, {}))
            except ResultExistsError:
                result = read_group(store, result_group(method, dim))
                log(f"      {method:>5} k={dim:<3} already fitted")
                continue
            rmse = float(result["rmse"].sel(split="test").values)
            log(f"      {method:>5} k={dim:<3} test RMSE {rmse:.4f}  ({time.perf_counter() - start:.0f} s)")

    log("[4/6] exporting 2-D embeddings as NIfTI")
    for method in methods:
        emb = read_group(store, result_group(method, 2))["embedding"]
        emb = emb.assign_coords({c: ds[c] for c in ("i", "j", "k") if c not in emb.coords})
        path = maps_dir / f"{method}-k2-embedding.nii.gz"
        write_nifti(emb, path)
        written["embeddings"].append(path)

    log("[5/6] evaluating: reconstruction RMSE and prediction of synthetic target maps")
    targets = write_synthetic_targets(out_dir / "demo-targets", store=store)
    eval_dir = out_dir / "demo-evaluation"
    result = run_evaluation(store, targets, eval_dir, methods=list(methods), dims=(2,), split="both", random_state=seed)
    written["summary"] = result.describe()
    written["evaluation"] = eval_dir

    log("[6/6] writing the report")
    written["report"] = write_report(store, eval_dir)
    return written


def _run(args):
    from .info import describe

    start = time.perf_counter()
    methods, dims = tuple(args.methods), tuple(args.dims)
    written = run_demo(
        args.out_dir, genes=args.genes, random_state=args.seed, methods=methods, dims=dims, overwrite=args.overwrite
    )
    print()
    print(describe(written["store"]))
    print()
    print(written["summary"])
    print("\nwrote:")
    for path in written["maps"] + written["embeddings"]:
        print(f"  {path}")
    print(f"  {written['evaluation']}/  (prediction.csv, reconstruction.csv, figures)")
    print(f"  {written['report']}  <- open this in a browser")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")


def register(sub):
    p = sub.add_parser("demo", help="the whole pipeline on synthetic data: build, fit, export, evaluate, report")
    p.add_argument(
        "-o",
        "--out",
        "--output",
        "--out-dir",
        dest="out_dir",
        default="store",
        help="folder the demo writes into (default: store/)",
    )
    mark_output(p, "out_dir")
    p.add_argument("--genes", type=int, default=1000, help="number of synthetic genes")
    p.add_argument(
        "--methods", type=name_list, default=",".join(DEMO_METHODS), help="representations to fit, comma-separated"
    )
    p.add_argument(
        "--dims",
        type=int_list,
        default="2,8",
        help="comma-separated dimensions to fit (2 is needed for the evaluation)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the data, the splits and every fit (default 0)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the demo's store and its fits when they were made with other --genes or --seed",
    )
    p.set_defaults(func=_run)
