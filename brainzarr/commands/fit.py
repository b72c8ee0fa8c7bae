"""``brainzarr fit``: fit representations at several dimensions and write them into the store."""

from __future__ import annotations

import sys
import time
from pathlib import Path

#: options of the command line that go to every estimator taking a parameter of that name
GENERIC_OPTIONS = {"max_epochs": "--max-epochs", "device": "--device"}


def parse_list(text: str, what: str, cast=str) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what} is empty")
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise ValueError(f"--{what} must be comma-separated {cast.__name__}s, got {text!r}") from None


def parse_options(pairs) -> dict:
    """``method.name=value`` or ``name=value`` strings -> {method or None: {name: value}}.

    Values are read as JSON when they parse (numbers, true/false, null, lists), else strings.
    """
    import json

    out: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option takes NAME=VALUE or METHOD.NAME=VALUE, got {pair!r}")
        method, _, name = key.rpartition(".")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method or None, {})[name.replace("-", "_")] = parsed
    return out


def method_params(method: str, args, options: dict) -> dict:
    """The estimator parameters of ``method`` from the generic flags and ``--option``s.

    Generic flags (``--max-epochs``, ``--device``) go only to estimators that take them;
    ``--option name=value`` must suit every method it applies to, ``method.name=value`` one.
    """
    from ..models.pipeline import model_class

    names = set(model_class(method)._get_param_names())
    params = {
        name: getattr(args, name) for name in GENERIC_OPTIONS if getattr(args, name) is not None and name in names
    }
    params.update(options.get(None, {}))
    params.update(options.get(method, {}))
    return params


def run_fit(args):
    """Fit every method and dim of ``args``; the RMSE table (DataFrame) of those results."""
    from ..models import METHODS
    from ..models.pipeline import fit_store, make_model, result_group, rmse_table
    from ..store import check_schema
    from .build import dask_client

    check_schema(args.store)
    methods = parse_list(args.methods, "methods")
    dims = parse_list(args.dims, "dims", int)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if min(dims) < 1:
        raise ValueError("--dims must be positive")
    options = parse_options(args.option)
    bad = [m for m in options if m is not None and m not in methods]
    if bad:
        raise ValueError(f"--option for {', '.join(bad)}, which is not among --methods")
    params = {}
    for method in methods:  # fail before any fitting: unavailable methods, bad options
        params[method] = method_params(method, args, options)
        make_model(method, dims[0], seed=args.seed, **dict(params[method]))
    for name, flag in GENERIC_OPTIONS.items():
        if getattr(args, name) is not None and not any(name in params[m] for m in methods):
            print(f"brainzarr fit: note: {flag} applies to none of {', '.join(methods)}", file=sys.stderr)
    exists = {(m, d) for m in methods for d in dims if (Path(args.store) / result_group(m, d)).exists()}
    if exists and not (args.overwrite or args.skip_existing):
        raise FileExistsError(
            f"{', '.join(result_group(m, d) for m, d in sorted(exists))} exist in {args.store}; "
            "pass --overwrite to refit or --skip-existing to keep them"
        )
    client = dask_client(args)
    try:
        for method in methods:
            for dim in dims:
                if (method, dim) in exists and not args.overwrite:
                    print(f"{method} k{dim}: exists, skipped")
                    continue
                start = time.perf_counter()
                result = fit_store(
                    args.store,
                    method,
                    dim,
                    overwrite=args.overwrite,
                    seed=args.seed,
                    split=args.split,
                    write_reconstruction=not args.no_reconstruction,
                    progress=True if args.progress else None,
                    client=client,
                    **dict(params[method]),
                )
                train, test = (float(v) for v in result["rmse"].values)
                print(
                    f"{method} k{dim}: train RMSE {train:.5f}  test RMSE {test:.5f}  "
                    f"({time.perf_counter() - start:.1f} s)",
                    flush=True,
                )
    finally:
        if client is not None:
            client.close()
    return rmse_table(args.store, methods=methods, dims=dims)


def format_table(table) -> str:
    if table.empty:
        return "no results"
    seconds = {c: (lambda v: f"{v:.1f}") for c in ("fit_seconds", "transform_seconds")}
    return table.to_string(index=False, float_format=lambda v: f"{v:.5f}", formatters=seconds)


def _run(args):
    start = time.perf_counter()
    table = run_fit(args)
    print("\n" + format_table(table))
    print(f"fit finished in {time.perf_counter() - start:.0f} s")


def register(sub):
    p = sub.add_parser(
        "fit",
        help="fit representations (PCA, kPCA, NMF, t-SNE, UMAP, auto-encoder) into the store",
        description="Fit each method at each dimension on the training voxels, write embedding, "
        "reconstruction, parameters and train/test RMSE under "
        "representations/<method>/k<dim>, and print the RMSE table.",
    )
    p.add_argument("store", help="a brainzarr store")
    p.add_argument("--methods", default="pca", help="comma-separated: pca,kpca,nmf,tsne,umap,ae (default: pca)")
    p.add_argument("--dims", default="2,4,8,16,32,64,128", help="comma-separated dimensions")
    p.add_argument("--max-epochs", type=int, help="epochs at most (methods that train in epochs: nmf, ae)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="torch device (methods that take one)")
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
    p.add_argument("--progress", action="store_true", help="always show progress bars (default: on a terminal)")
    p.add_argument("--workers", type=int, help="run the streamed passes on a local dask.distributed cluster")
    p.add_argument("--scheduler", help="address of a running dask.distributed scheduler")
    p.set_defaults(func=_run)
