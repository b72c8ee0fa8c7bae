"""``brainzarr reproduce``: the reference study's whole protocol on a store, one page."""

from __future__ import annotations

from ..exceptions import InputError
from ._args import (
    add_cluster_arguments,
    add_output_argument,
    add_storage_arguments,
    add_store_argument,
    dask_client,
    folds,
    int_list,
    name_list,
    positive_int,
    store_path,
)
from .evaluate import add_interpolation_argument


def _params(text: str | None) -> dict | None:
    """--params: a JSON object of per-method estimator parameters."""
    import json

    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise InputError(
            '--params takes a JSON object such as \'{"ae": {"max_epochs": 50}}\' (names in double quotes), '
            f"got {text!r}"
        ) from None


def _run(args):
    from ..evaluate.reproduce import STUDY_DIMS, STUDY_METHODS, reproduce_study
    from ..models import check_method_names

    methods = args.methods or list(STUDY_METHODS)
    check_method_names(methods)
    splits = ["random", "blocked"] if args.split == "both" else [args.split]
    with dask_client(args):
        index = reproduce_study(
            store_path(args),
            args.out,
            args.targets,
            methods=methods,
            dims=args.dims or STUDY_DIMS,
            splits=splits,
            random_state=args.seed,
            method_params=_params(args.params),
            grid=args.grid,
            n_splits=args.folds,
            n_jobs=args.jobs,
            interpolation=args.interpolation,
        )
    print(f"wrote {index}  (open it in a browser)")


def register(sub):
    p = sub.add_parser(
        "reproduce",
        help="the reference study's protocol: six methods x dims, RMSE, XGBoost, ANOVA/Tukey, one page",
        description="Fit the study's six methods at dims 2..128 on the random and the blocked split, "
        "evaluate held-out RMSE and XGBoost prediction of the target maps from the 2-D embeddings, "
        "ANOVA + Tukey, and write OUT/reproduce.html beside the study's numbers. Fits already in the "
        "store are reused, so an interrupted run resumes.",
    )
    add_store_argument(p)
    add_output_argument(p, dest="out", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--targets", nargs="+", metavar="DIR_OR_FILES", help="target maps (default: synthetic ones)")
    add_interpolation_argument(p)
    p.add_argument("--methods", type=name_list, help="comma-separated (default: pca,kpca,nmf,tsne,umap,ae)")
    p.add_argument("--dims", type=int_list, help="comma-separated (default: 2,4,8,16,32,64,128)")
    p.add_argument(
        "--split", choices=("random", "blocked", "both"), default="both", help="split schemes (default: both)"
    )
    p.add_argument("--params", help='per-method estimator parameters as JSON, e.g. \'{"ae": {"max_epochs": 50}}\'')
    p.add_argument("--grid", default="default", help="XGBoost grid: 'default', 'large' or a JSON object")
    p.add_argument("--folds", type=folds, default=5, help="cross-validation folds within the training voxels")
    p.add_argument("--seed", type=int, default=0, help="seeds every fit, the CV folds and XGBoost")
    p.add_argument("--jobs", type=positive_int, help="models fitted at once (default: the CPU count)")
    add_storage_arguments(p)
    add_cluster_arguments(p)
    p.set_defaults(func=_run)
