"""``brainzarr fit``: fit representations at several dimensions and write them into the store."""

from __future__ import annotations

import logging
import time

from ..exceptions import InputError
from ._args import (
    add_cluster_arguments,
    add_storage_arguments,
    add_store_argument,
    dask_client,
    device_name,
    int_list,
    name_list,
    positive_int,
    store_path,
)

log = logging.getLogger(__name__)

#: options of the command line that go to every estimator taking a parameter of that name
GENERIC_OPTIONS = {"max_epochs": "--max-epochs", "device": "--device"}
#: the options that set the estimator parameters every method shares (models.JOB_PARAMS)
OWN_OPTIONS = {"n_components": "--dims", "random_state": "--seed"}


def parse_options(pairs) -> dict:
    """``method.name=value`` or ``name=value`` strings -> {method or None: {name: value}}.

    Values are read as JSON when they parse (numbers, true/false, null, lists), else strings.
    """
    import json

    out: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--option takes NAME=VALUE or METHOD.NAME=VALUE, got {pair!r}")
        method, _, name = key.rpartition(".")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        name = name.replace("-", "_")
        if name in OWN_OPTIONS:
            raise InputError(f"--option {key}=...: {name} is set by {OWN_OPTIONS[name]}, for every method")
        out.setdefault(method or None, {})[name] = parsed
    return out


def method_params(method: str, args, options: dict) -> dict:
    """The estimator parameters of ``method`` from the generic flags and ``--option``s.

    Generic flags (``--max-epochs``, ``--device``) go only to estimators that take them;
    ``--option name=value`` must suit every method it applies to, ``method.name=value`` one.
    """
    from ..models.store_fitting import model_class

    names = set(model_class(method)._get_param_names())
    params = {
        name: getattr(args, name) for name in GENERIC_OPTIONS if getattr(args, name) is not None and name in names
    }
    params.update(options.get(None, {}))
    params.update(options.get(method, {}))
    return params


def run_fit(args):
    """Fit every method and dim of ``args``; the RMSE table (DataFrame) of those results."""
    from ..exceptions import ResultExistsError
    from ..models import check_method_names
    from ..models.store_fitting import check_fit, fit_store, result_group, rmse_table, split_scheme
    from ..store import Store

    store = Store(store_path(args))  # validated once for the whole command
    methods, dims = args.methods, args.dims
    check_method_names(methods)
    options = parse_options(args.option)
    bad = [m for m in options if m is not None and m not in methods]
    if bad:
        raise InputError(f"--option for {', '.join(bad)}, which is not among --methods")
    params = {method: method_params(method, args, options) for method in methods}
    for name, flag in GENERIC_OPTIONS.items():
        if getattr(args, name) is not None and not any(name in params[m] for m in methods):
            log.warning("brainzarr fit: note: %s applies to none of %s", flag, ", ".join(methods))
    _refuse_dims_above_genes(methods, dims, int(store.dataset.sizes["gene"]))
    # everything that can fail without computing fails now: methods, options, dims, writability
    todo, existing = [], []
    for method in methods:
        for dim in dims:
            try:
                check_fit(
                    store,
                    method,
                    dim,
                    overwrite=args.overwrite,
                    params=dict(params[method]),
                    write_reconstruction=not args.no_reconstruction,
                    split=args.split,
                )
                todo.append((method, dim))
            except ResultExistsError:
                existing.append((method, dim))
    if existing and not args.skip_existing:
        scheme = split_scheme(store, args.split)
        names = ", ".join(result_group(m, d, scheme) for m, d in existing)
        raise ResultExistsError(
            f"{names} exist in {store.path}; pass --overwrite to refit or --skip-existing to keep them"
        )
    for method, dim in existing:
        log.info("%s k%d: exists, skipped", method, dim)
    with dask_client(args):
        for method, dim in todo:
            start = time.perf_counter()
            result = fit_store(
                store,
                method,
                dim,
                overwrite=args.overwrite,
                random_state=args.seed,
                split=args.split,
                write_reconstruction=not args.no_reconstruction,
                **dict(params[method]),
            )
            train, test = (float(v) for v in result["rmse"].values)
            log.info(
                "%s k%d: train RMSE %.5f  test RMSE %.5f  (%.1f s)",
                method,
                dim,
                train,
                test,
                time.perf_counter() - start,
            )
    return rmse_table(store, methods=methods, dims=dims)


def _refuse_dims_above_genes(methods, dims, n_genes: int) -> None:
    """Refuse dims above the store's genes for a method whose components live among the genes,
    naming the ``--dims`` that would fit (the default, the study's 2 to 128, asks for more
    genes than a small store has)."""
    from ..models.store_fitting import model_class

    within = [m for m in methods if getattr(model_class(m), "components_within_features", False)]
    over = sorted(d for d in set(dims) if d > n_genes)
    if not within or not over:
        return
    fit = [d for d in dims if d <= n_genes]
    hint = (
        f"give --dims {','.join(map(str, fit))} (those of {','.join(map(str, dims))} that fit)"
        if fit
        else f"give --dims of at most {n_genes}"
    )
    raise InputError(
        f"{within[0]} with {over[0]} components needs at least as many genes; the store has {n_genes}: {hint}"
    )


def format_table(table) -> str:
    if table.empty:
        return "no results"
    seconds = {c: (lambda v: f"{v:.1f}") for c in ("fit_seconds", "transform_seconds")}
    return table.to_string(index=False, float_format=lambda v: f"{v:.5f}", formatters=seconds)


def _run(args):
    start = time.perf_counter()
    table = run_fit(args)
    print(format_table(table))
    log.info("fit finished in %.0f s", time.perf_counter() - start)


def _resume(args) -> str:
    """How to go on after an interruption: each result is written whole, and those written are
    kept by --skip-existing (the same command again refuses them, or with --overwrite refits)."""
    if args.skip_existing:
        return "run the same command again to resume"
    return "run it again with --skip-existing to keep the results already written and fit the rest"


def register(sub):
    p = sub.add_parser(
        "fit",
        help="fit representations (PCA, kPCA, NMF, t-SNE, UMAP, auto-encoder) into the store",
        description="Fit each method at each dimension on the training voxels, write embedding, "
        "reconstruction, parameters and train/test RMSE under "
        "representations/<split>/<method>/k<dim>, and print the RMSE table.",
    )
    add_store_argument(p)
    p.add_argument(
        "--methods", type=name_list, default=["pca"], help="comma-separated: pca,kpca,nmf,tsne,umap,ae (default: pca)"
    )
    p.add_argument(
        "--dims",
        type=int_list,
        default=[2, 4, 8, 16, 32, 64, 128],
        help="comma-separated dimensions (default: 2,4,8,16,32,64,128, the study's)",
    )
    p.add_argument("--max-epochs", type=positive_int, help="epochs at most (methods that train in epochs: nmf, ae)")
    p.add_argument(
        "--device",
        type=device_name,
        help="torch device of the methods that take one: auto (CUDA when available; their default), cpu, "
        "cuda or cuda:N",
    )
    p.add_argument(
        "--option",
        action="append",
        metavar="[METHOD.]NAME=VALUE",
        help="an estimator parameter, e.g. pca.n_power_iter=6 or kpca.n_landmarks=1000 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds every estimator (recorded)")
    p.add_argument(
        "--split", choices=("random", "blocked"), help="train/test split to use (default: the store's split)"
    )
    p.add_argument(
        "--no-reconstruction",
        action="store_true",
        help="do not write reconstruction (voxel, gene), as large as the expression; RMSE is still computed",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing results")
    p.add_argument("--skip-existing", action="store_true", help="keep existing results and fit only the missing ones")
    p.set_defaults(_resume=_resume)
    add_cluster_arguments(p)
    add_storage_arguments(p)
    p.set_defaults(func=_run)
