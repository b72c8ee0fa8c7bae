"""``brainzarr build``: samples -> voxels -> store."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ..exceptions import DataNotFoundError, InputError
from ..layout import COMPRESSORS, SHARD_GENES, Layout
from ..sources import SOURCES
from ._args import (
    add_cluster_arguments,
    add_grid_arguments,
    add_output_argument,
    add_storage_arguments,
    chunk_shape,
    dask_client,
    fraction,
    grid_resolution,
    positive_float,
    positive_int,
    store_path,
)

log = logging.getLogger(__name__)

#: what ``--genes`` says
GENES_HELP = "N genes (evenly spaced), comma-separated symbols, or a text file of symbols"


def add_build_arguments(p, *, out_required=True):
    """Arguments shared by every command that builds a store."""
    add_source_arguments(p)
    add_grid_arguments(p)
    p.add_argument("--genes", help=f"{GENES_HELP} (default: all)")
    p.add_argument(
        "--assignment",
        choices=("nearest", "idw", "inr"),
        default="nearest",
        help="samples -> voxels: mean of samples inside else nearest, IDW of k nearest, or an "
        "implicit neural representation (see `brainzarr inr`)",
    )
    p.add_argument(
        "--inr-model",
        help="with --assignment inr: a model from `brainzarr inr fit`, whose genes the store has unless --genes "
        "says otherwise (default: fit one on the source's samples first)",
    )
    p.add_argument("--n-neighbors", type=positive_int, default=10, help="neighbours of --assignment idw")
    p.add_argument("--k", type=positive_int, dest="n_neighbors", help=argparse.SUPPRESS)  # the old name
    p.add_argument("--same-hemisphere", action="store_true", help="use only samples of the voxel's hemisphere")
    p.add_argument("--split", choices=("random", "blocked"), default="random", help="train/test split scheme")
    p.add_argument("--test-fraction", type=fraction, default=0.2, help="voxels held out for testing (default 0.2)")
    p.add_argument(
        "--block-mm", type=positive_float, help="cube edge of the blocked split (default 48 mm, >= 6 voxels)"
    )
    p.add_argument(
        "--buffer-mm",
        type=float,
        help="voxels this close to a test cube are in neither set (blocked split; default 16 mm, >= 1 voxel)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the synthetic source and the splits")
    p.add_argument("--chunks", type=chunk_shape, default=(4096, 128), help="chunk shape voxels,genes")
    g = p.add_argument_group("layout (docs/design.md: how the default was chosen)")
    g.add_argument(
        "--dtype",
        choices=("uint16", "float32"),
        default="uint16",
        help="uint16: values packed with CF scale_factor (error <= 1/131070; default), or float32",
    )
    g.add_argument("--compressor", choices=COMPRESSORS, default="zstd", help="chunk compressor (default zstd)")
    g.add_argument("--no-shards", action="store_true", help="one file per chunk instead of shards per row block")
    add_output_argument(
        p, dest="out", required=out_required, writes_a_store=True, help="the store to write, e.g. store/s8.zarr"
    )
    add_overwrite_arguments(p)
    add_cluster_arguments(p)
    add_storage_arguments(p)


def add_overwrite_arguments(p) -> None:
    """``--overwrite`` and ``--discard-results``, for the commands that write a store."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a brainzarr store built with other settings (never anything else)",
    )
    p.add_argument(
        "--discard-results",
        action="store_true",
        help="with --overwrite: also when the store holds fitted results (they are removed with it)",
    )


def add_source_arguments(p):
    """Arguments that choose and configure the sample source (``--source`` and its options)."""
    p.add_argument("--source", choices=SOURCES, default="synthetic", help="where expression comes from")
    g = p.add_argument_group("--source abagen")
    g.add_argument("--data-dir", help="folder holding microarray/normalized_microarray_donor*/")
    g.add_argument("--donors", help="comma-separated donor ids (default: every donor folder present)")
    g.add_argument("--download", action="store_true", help="let abagen download missing donors (network)")
    g.add_argument(
        "--probe-selection",
        default="diff_stability",
        help="one value per gene from its probes (abagen's methods): diff_stability (default; two or more "
        "donors), average, mean, max_intensity or max_variance",
    )
    g.add_argument(
        "--ibf-threshold",
        type=float,
        default=0.5,
        help="keep probes detected in at least this fraction of all samples (abagen's intensity-based "
        "filter; default 0.5)",
    )
    g.add_argument("--lr-mirror", default="bidirectional", help="bidirectional, leftright, rightleft or none")
    g = p.add_argument_group("--source parcellated")
    g.add_argument("--table", help="region x gene CSV, or .tsv (first column: atlas label)")
    g.add_argument("--atlas", help="the atlas NIfTI of the table's labels")
    g.add_argument(
        "--missing-regions",
        choices=("error", "drop"),
        default="error",
        help="atlas regions with no values in the table: stop (default) or leave their voxels out",
    )


def parse_genes(text):
    """``--genes``: None, a number, a gene list file (read into its symbols) or symbols."""
    if text is None:
        return None
    if text.strip().isdigit():
        return int(text)
    if Path(text).is_file():
        from ..sources.table import read_gene_list

        return read_gene_list(text)
    if Path(text).suffix.lower() in (".txt", ".csv", ".tsv", ".lst") or "/" in text:
        raise DataNotFoundError(f"no gene list file {text}")
    return text


def source_options(args) -> dict:
    if args.source == "abagen":
        if not args.data_dir and not args.download:
            raise InputError("--source abagen needs --data-dir (or --download to fetch the data)")
        return {
            "data_dir": args.data_dir,
            "download": args.download,
            "donors": args.donors.split(",") if args.donors else None,
            "probe_selection": args.probe_selection,
            "ibf_threshold": args.ibf_threshold,
            "lr_mirror": None if args.lr_mirror.lower() == "none" else args.lr_mirror,
        }
    if args.source == "parcellated":
        if not args.table or not args.atlas:
            raise InputError("--source parcellated needs --table and --atlas")
        return {"table": args.table, "atlas": args.atlas, "missing_regions": args.missing_regions}
    return {}


def run_build(args) -> Path:
    from ..build import build_store

    common = dict(
        resolution=grid_resolution(args),
        mask=args.mask,
        split=args.split,
        test_fraction=args.test_fraction,
        block_mm=args.block_mm,
        buffer_mm=args.buffer_mm,
        random_state=args.seed,
        chunks=tuple(args.chunks),
        layout=Layout(
            dtype=args.dtype, compressor=args.compressor, shard_genes=None if args.no_shards else SHARD_GENES
        ),
        overwrite=args.overwrite,
        discard_results=args.discard_results,
    )
    with dask_client(args):
        if args.assignment == "inr":
            from ..inr.render import build_inr_store

            return build_inr_store(
                store_path(args, "out"),
                source=args.source,
                genes=parse_genes(args.genes),
                model=getattr(args, "inr_model", None),
                source_options=source_options(args),
                **common,
            )
        return build_store(
            store_path(args, "out"),
            source=args.source,
            genes=parse_genes(args.genes),
            assignment=args.assignment,
            n_neighbors=args.n_neighbors,
            same_hemisphere=args.same_hemisphere,
            **common,
            **source_options(args),
        )


def _run(args):
    from .info import describe

    start = time.perf_counter()
    out = run_build(args)
    log.info("built %s in %.1f s", out, time.perf_counter() - start)
    print(describe(out))


def register(sub):
    p = sub.add_parser(
        "build",
        help="build a voxel x gene store (resumes an interrupted build)",
        description="Build a voxel x gene store. Running the same command again after an interruption resumes it.",
    )
    add_build_arguments(p)
    p.set_defaults(func=_run)
