"""``brainzarr evaluate``: reconstruction tables and downstream prediction of target maps."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from .._location import user_path
from ..exceptions import InputError
from ._args import (
    add_cluster_arguments,
    add_output_argument,
    add_storage_arguments,
    add_store_argument,
    dask_client,
    folds,
    positive_float,
    positive_int,
    store_path,
)

log = logging.getLogger(__name__)


def parse_embedding(spec: str) -> tuple[str, list[str]]:
    """'NAME=a.nii.gz,b.nii.gz' -> ('NAME', ['a.nii.gz', 'b.nii.gz'])."""
    name, sep, files = spec.partition("=")
    if not sep or not name.strip() or not files.strip():
        raise InputError(f"--embedding takes NAME=file1.nii.gz,file2.nii.gz (or NAME=4d.nii.gz), got {spec!r}")
    return name.strip(), [f.strip() for f in files.split(",") if f.strip()]


def _split_list(values):
    return None if values is None else [v for item in values for v in str(item).split(",") if v]


@contextlib.contextmanager
def resolved_targets(targets, store, out_dir):
    """The --targets argument: files/directories, or 'synthetic': maps made from a synthetic
    store's truth, written to OUT/synthetic_targets/. A job that then refuses (or fails) takes
    them back, with the folders it made for them, so that a refusal leaves nothing behind."""
    if targets != ["synthetic"] or Path("synthetic").exists():
        yield targets
        return
    from ..evaluate.synthetic_targets import write_synthetic_targets

    out_dir = user_path(out_dir)  # as run_evaluation reads it
    folder = out_dir / "synthetic_targets"
    made = [path for path in (folder, out_dir) if not path.exists()]
    paths = write_synthetic_targets(folder, store=store)
    try:
        yield paths
    except BaseException:
        if folder in made:  # maps an earlier run left in a folder that was there stay
            for file in paths:
                file.unlink(missing_ok=True)
            for path in made:  # a folder the job wrote its own files into stays
                with contextlib.suppress(OSError):
                    path.rmdir()
        raise


def evaluation_options(args) -> dict:
    """Keyword arguments of run_evaluation / write_report from the shared CLI arguments."""
    embeddings = dict(parse_embedding(s) for s in args.embedding or [])
    if len(embeddings) != len(args.embedding or []):
        raise InputError("each --embedding NAME must be unique")
    return {
        "methods": _split_list(args.methods),
        "dims": _dims(args.dims),
        "split": args.split,
        "embeddings": embeddings,
        "grid": args.grid,
        "n_splits": args.folds,
        "block_mm": args.block_mm,
        "random_state": args.seed,
        "n_jobs": args.jobs,
        "save_to_store": not args.no_store,
        "interpolation": args.interpolation,
        "embedding_interpolation": args.embedding_interpolation,
    }


def _dims(values) -> tuple[int, ...] | None:
    """``--dims``: positive integers (space- or comma-separated), or ``all`` (None); int() said
    ``invalid literal for int() with base 10: '2.5'`` and took 0."""
    if values == ["all"]:
        return None
    dims = []
    for text in _split_list(values):
        try:
            dims.append(positive_int(text))
        except argparse.ArgumentTypeError:
            raise InputError(f"--dims takes positive integers, or all, got {text!r}") from None
    return tuple(dims)


def add_interpolation_argument(p) -> None:
    """``--interpolation``: how target maps are read onto the store's grid."""
    from ..nifti import INTERPOLATIONS

    p.add_argument(
        "--interpolation",
        choices=INTERPOLATIONS,
        default="linear",
        help="how target maps are resampled onto the store's grid (default linear; 'mean' averages a "
        "map finer than the store over each voxel)",
    )


def add_embedding_interpolation_argument(p) -> None:
    """``--embedding-interpolation``: how external embeddings are read onto the store's grid."""
    from ..nifti import INTERPOLATIONS

    p.add_argument(
        "--embedding-interpolation",
        choices=INTERPOLATIONS,
        default="linear",
        help="how --embedding files are resampled onto the store's grid (default linear: an embedding "
        "exported from the store comes back unchanged; 'mean' averages one made on a finer grid)",
    )


def add_evaluation_arguments(p) -> None:
    """Arguments shared by ``evaluate`` and ``report``."""
    add_store_argument(p, "a brainzarr store with fitted representations")
    add_storage_arguments(p)
    add_cluster_arguments(p)
    p.add_argument(
        "--targets",
        nargs="+",
        metavar="DIR_OR_FILES",
        help="target maps: a directory of NIfTI files, NIfTI files (any MNI grid), or 'synthetic' "
        "(maps made from a synthetic store's truth)",
    )
    p.add_argument(
        "--embedding",
        nargs="+",
        action="extend",
        metavar="NAME=FILES",
        help="an external embedding: NAME=comp1.nii.gz,comp2.nii.gz or NAME=4d.nii.gz (repeatable)",
    )
    p.add_argument("--methods", nargs="+", help="store representations to evaluate (default: all)")
    p.add_argument(
        "--dims",
        nargs="+",
        default=["2"],
        help="embedding dims used for prediction (default: 2, as the study; 'all' for every dim)",
    )
    p.add_argument(
        "--split",
        choices=("random", "blocked", "both"),
        default="both",
        help="split schemes to report (default: both, side by side)",
    )
    p.add_argument(
        "--grid",
        default="default",
        help="XGBoost grid: 'default' (6 candidates), 'large' (150) or a JSON object, e.g. "
        '\'{"max_depth": [3, 6], "n_estimators": [100, 200]}\'',
    )
    add_interpolation_argument(p)
    add_embedding_interpolation_argument(p)
    p.add_argument("--folds", type=folds, default=5, help="cross-validation folds within the training voxels")
    p.add_argument("--block-mm", type=positive_float, help="cube edge of the blocked CV folds (default: the store's)")
    p.add_argument("--seed", type=int, default=0, help="seeds the CV folds and XGBoost")
    p.add_argument("--jobs", type=positive_int, help="models fitted at once (default: the CPU count)")
    p.add_argument("--no-store", action="store_true", help="do not save the results into the store")
    add_output_argument(p, dest="out", required=True, metavar="OUTDIR", help="output folder")


@contextlib.contextmanager
def warn_if_the_saved_evaluation_shrinks(store):
    """Warn when the job inside replaces the store's saved evaluation, which the report shows,
    with one of fewer representations (``--methods pca`` after a full evaluation)."""
    from ..evaluate.run import saved_representations

    before = saved_representations(store)
    yield
    after = saved_representations(store) if before else []
    dropped = sorted(set(before) - set(after))
    if dropped and after:
        log.warning(
            "the store's saved evaluation, which `brainzarr report` shows, also held %s; it now holds "
            "this one's %d representation(s) (--no-store leaves the saved evaluation as it is)",
            ", ".join(dropped),
            len(after),
        )


def _run(args):
    from ..evaluate import run_evaluation
    from ..store import check_schema

    options = evaluation_options(args)
    store = store_path(args)
    check_schema(store)  # a missing store is the one line printed, not after the line below
    if args.targets is None and not options["embeddings"]:
        log.info("no --targets given: writing the reconstruction table only")
    with resolved_targets(args.targets, store, args.out) as targets:
        with dask_client(args), warn_if_the_saved_evaluation_shrinks(store):
            result = run_evaluation(store, targets, args.out, **options)
    print(result.describe())
    log.info("evaluation finished in %.0f s", result.seconds)


def register(sub):
    p = sub.add_parser(
        "evaluate",
        help="reconstruction RMSE and XGBoost prediction of target maps",
        description="Evaluate a store's representations (and external embeddings): "
        "reconstruction RMSE, and prediction of target maps (PET, MRI...) from "
        "the embeddings with XGBoost, under the random and the blocked split.",
    )
    add_evaluation_arguments(p)
    p.set_defaults(func=_run)
