"""``brainzarr inr fit|evaluate|render``: the gene-conditioned implicit neural representation."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from .._atomic import refuse_foreign_outputs, write_file
from .._text import text_head
from ..exceptions import InputError
from ._args import (
    add_cluster_arguments,
    add_grid_arguments,
    add_output_argument,
    add_storage_arguments,
    chunk_shape,
    dask_client,
    device_name,
    folds,
    grid_resolution,
    positive_float,
    positive_int,
    store_path,
)
from .build import GENES_HELP, add_overwrite_arguments, add_source_arguments, parse_genes, source_options

log = logging.getLogger(__name__)

METHOD_CHOICES = ("inr", "idw", "nearest", "kriging")
#: voxels of a store an INR is fitted on (`inr fit --store`)
DEFAULT_STORE_SAMPLES = 5000


def _add_model_arguments(p):
    g = p.add_argument_group("INR model")
    g.add_argument("--max-epochs", type=positive_int, default=150, help="training epochs (default 150)")
    g.add_argument("--epochs", type=positive_int, dest="max_epochs", help=argparse.SUPPRESS)  # the old name
    g.add_argument("--features", type=int, default=32, help="feature / gene-embedding length (default 32)")
    g.add_argument("--width", type=int, default=256, help="hidden width of the coordinate network")
    g.add_argument("--depth", type=int, default=2, help="hidden layers of the coordinate network")
    g.add_argument(
        "--backbone",
        choices=("fourier", "siren"),
        default="fourier",
        help="coordinate network: random Fourier features then an MLP (default), or SIREN (sine layers)",
    )
    g.add_argument(
        "--length-scale", type=float, default=24.0, help="length scale (mm) of the Fourier features (default 24)"
    )
    g.add_argument("--rank", type=int, default=64, help="gene-space components trained on (projected solver)")
    g.add_argument(
        "--solver",
        choices=("auto", "projected", "masked"),
        default="auto",
        help="auto (default): projected when at least half the genes are observed at every sample, else masked",
    )
    g.add_argument(
        "--ensemble",
        type=int,
        default=3,
        help="networks trained with seeds S, S+1, ... whose predictions are averaged (default 3)",
    )
    g.add_argument("--batch-size", type=int, default=256, help="samples per mini-batch (default 256)")
    g.add_argument(
        "--learning-rate", type=positive_float, default=3e-3, help="peak of the one-cycle schedule (default 3e-3)"
    )
    g.add_argument("--lr", type=positive_float, dest="learning_rate", help=argparse.SUPPRESS)  # the old name
    g.add_argument("--no-tissue", action="store_true", help="do not feed nilearn's grey/white-matter masks")
    g.add_argument("--no-donor-effects", action="store_true", help="no per-donor x gene offsets")
    g.add_argument("--device", type=device_name, default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")


def _inr_params(args) -> dict:
    return {
        "max_epochs": args.max_epochs,
        "n_features": args.features,
        "width": args.width,
        "depth": args.depth,
        "backbone": args.backbone,
        "length_scale_mm": args.length_scale,
        "rank": args.rank,
        "solver": args.solver,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "tissue": not args.no_tissue,
        "donor_effects": not args.no_donor_effects,
        "n_ensemble": args.ensemble,
        "device": args.device,
        "random_state": args.seed,
    }


#: the files ``inr evaluate`` writes into its output folder
INR_EVALUATION_FILES = ("heldout.csv", "summary.csv", "heldout.png", "maps.csv")


def _is_inr_evaluation(folder: Path) -> bool:
    """Whether ``folder`` holds a held-out table that ``inr evaluate`` wrote (by its columns)."""
    head = "cv,method,gene,fold,"
    return text_head(folder / "heldout.csv", len(head)) == head


def _check_device(args) -> None:
    """CUDA asked for where torch sees none stops the command before it loads or computes."""
    from .._torch import resolve_device

    resolve_device(args.device)


def _load_table(args):
    from ..sources import load_source

    if getattr(args, "store", None):
        from ..inr.render import table_from_store

        samples = DEFAULT_STORE_SAMPLES if args.max_samples is None else args.max_samples
        return table_from_store(args.store, n_samples=samples, genes=parse_genes(args.genes), random_state=args.seed)
    if getattr(args, "max_samples", None) is not None:
        raise InputError("--max-samples draws voxels of a store: it goes with --store")
    return load_source(args.source, genes=parse_genes(args.genes), random_state=args.seed, **source_options(args))


def _fit(args):
    from ..inr import GeneINR
    from ..inr.model import check_save_path

    out = Path(args.out)
    check_save_path(out, overwrite=args.overwrite)  # before the fit, not after it
    _check_device(args)
    table = _load_table(args)
    log.info("fitting an INR on %s samples x %s genes", f"{table.sizes['sample']:,}", f"{table.sizes['gene']:,}")
    checkpoints = out.with_name(out.name + ".checkpoint")  # an interrupted fit resumes from here
    model = GeneINR(**_inr_params(args), checkpoint_dir=checkpoints)
    model.fit(table)
    model.save(out, overwrite=args.overwrite)
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    print(
        f"fitted in {model.fit_seconds_:.1f} s ({model.solver_} solver, final loss {model.history_[-1]:.4f}); "
        f"wrote {out}"
    )


def _evaluate(args):
    import pandas as pd

    from ..grid import mni152_grid
    from ..inr.evaluate import CV_SCHEMES, cross_validate, make_method, map_scores, summarize, synthetic_truth
    from ..inr.figures import plot_heldout

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_CHOICES]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_CHOICES)}")
    schemes = list(CV_SCHEMES) if args.cv == "both" else [args.cv]
    _check_device(args)
    out = Path(args.output)
    refuse_foreign_outputs(out, INR_EVALUATION_FILES, ours=_is_inr_evaluation(out), job="inr evaluate")
    out.mkdir(parents=True, exist_ok=True)
    table = _load_table(args)
    inr_params = _inr_params(args)
    start = time.perf_counter()
    frames = [
        cross_validate(
            table,
            methods=methods,
            cv=cv,
            n_folds=args.folds,
            block_mm=args.block_mm,
            random_state=args.seed,
            inr_params=inr_params,
        )
        for cv in schemes
    ]
    heldout = pd.concat(frames, ignore_index=True)
    write_file(out / "heldout.csv", lambda tmp: heldout.to_csv(tmp, index=False))
    summary = summarize(heldout)
    write_file(out / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    plot_heldout(
        heldout,
        out / "heldout.png",
        title=f"{table.attrs.get('source', 'table')}: {table.sizes['gene']:,} genes, {table.sizes['sample']:,} samples",
    )
    pd.set_option("display.width", 200)
    print(
        f"held-out samples ({', '.join(schemes)}; {table.sizes['gene']:,} genes; {time.perf_counter() - start:.0f} s):"
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    shown = set(summary["method"])
    if "true_field" in shown:
        print("true_field: the noise-free synthetic field scored against the noisy held-out samples (the noise floor).")
    if "inr_donor" in shown:  # blocked folds only: a left-out donor has no offsets to add
        print("inr_donor: the INR's population map plus the held-out sample's donor offsets.")
    if args.maps_resolution:
        truth = synthetic_truth(table)
        fitted = {m: make_method(m, random_state=args.seed, inr_params=inr_params).fit(table) for m in methods}
        maps = map_scores(fitted, mni152_grid(args.maps_resolution), table["gene"].values, truth=truth)
        write_file(out / "maps.csv", lambda tmp: maps.to_csv(tmp, index=False))
        cols = [c for c in maps.columns if c.startswith(("rmse_", "r_"))]
        print(
            f"\nmaps at {args.maps_resolution} mm, fitted on all samples (mean over genes; "
            "r_vs_idw is agreement with the IDW map, a secondary number):"
        )
        print(maps.groupby("method", sort=False)[cols].mean().to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {out / 'heldout.csv'}, summary.csv, heldout.png" + (", maps.csv" if args.maps_resolution else ""))


def _render(args):
    from ..build import DEFAULT_CHUNKS
    from .info import describe

    chunks = tuple(args.chunks) if args.chunks else DEFAULT_CHUNKS
    _check_device(args)
    start = time.perf_counter()
    with dask_client(args):
        out = _render_store(args, chunks)
    log.info("rendered %s in %.1f s", out, time.perf_counter() - start)
    print(describe(out))


def _render_store(args, chunks):
    from ..inr.render import render_store

    return render_store(
        args.model,
        store_path(args, "out"),
        resolution=grid_resolution(args),
        mask=args.mask,
        genes=parse_genes(args.genes),
        chunks=chunks,
        random_state=args.seed,
        overwrite=args.overwrite,
        discard_results=args.discard_results,
        device=args.device,
    )


def register(sub):
    p = sub.add_parser(
        "inr",
        help="implicit neural representation: fit, evaluate, render",
        description="Gene-conditioned implicit neural representation of the samples: one "
        "coordinate network for all genes, per-gene embeddings.",
    )
    inr_sub = p.add_subparsers(dest="inr_command", metavar="ACTION", required=True)

    f = inr_sub.add_parser("fit", help="fit an INR on a source's samples (or a store's voxels)")
    add_source_arguments(f)
    f.add_argument("--genes", help=f"{GENES_HELP} (default: all)")
    f.add_argument("--store", help="fit on the voxels of this store instead of a source's samples")
    f.add_argument(
        "--max-samples",
        type=positive_int,
        help=f"with --store: voxels drawn (seeded; default {DEFAULT_STORE_SAMPLES:,})",
    )
    f.add_argument("--seed", type=int, default=0, help="seeds the source (synthetic) and the model")
    add_output_argument(f, dest="out", required=True, help="model folder to write, e.g. store/inr-model")
    f.add_argument("--overwrite", action="store_true", help="replace a model folder written by brainzarr")
    _add_model_arguments(f)
    f.set_defaults(func=_fit)

    e = inr_sub.add_parser("evaluate", help="held-out samples: INR vs nearest, IDW, kriging")
    add_source_arguments(e)
    e.add_argument("--genes", help=f"{GENES_HELP} (default: all)")
    e.add_argument(
        "--cv",
        choices=("blocks", "donors", "both"),
        default="blocks",
        help="held-out folds: spatial blocks (k-fold) or leave-one-donor-out",
    )
    e.add_argument("--folds", type=folds, default=5, help="folds of --cv blocks")
    e.add_argument("--block-mm", type=positive_float, default=16.0, help="cube edge of the spatial blocks (mm)")
    e.add_argument("--methods", default=",".join(METHOD_CHOICES), help="comma-separated methods")
    e.add_argument(
        "--maps-resolution",
        type=int,
        default=0,
        help="also score maps on the MNI152 grid at this resolution (mm): error against the true "
        "field (synthetic) and agreement with IDW (secondary); 0: skip",
    )
    e.add_argument("--seed", type=int, default=0, help="seeds the source (synthetic), the folds and the models")
    add_output_argument(e, dest="output", required=True, help="folder for heldout.csv, summary.csv, heldout.png")
    _add_model_arguments(e)
    e.set_defaults(func=_evaluate)

    r = inr_sub.add_parser("render", help="render a fitted INR into a voxel x gene store")
    r.add_argument("model", help="model folder from `brainzarr inr fit`")
    add_grid_arguments(r)
    r.add_argument("--genes", help=f"{GENES_HELP} (default: all the model's)")
    add_output_argument(
        r, dest="out", required=True, writes_a_store=True, help="the store to write, e.g. store/inr-8mm.zarr"
    )
    r.add_argument("--chunks", type=chunk_shape, help="chunk shape voxels,genes (default 4096,128)")
    r.add_argument("--seed", type=int, default=0, help="seeds the store's train/test splits")
    r.add_argument("--device", type=device_name, default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    add_cluster_arguments(r)
    add_storage_arguments(r)
    add_overwrite_arguments(r)
    r.set_defaults(func=_render)
