"""``brainzarr report``: a self-contained HTML report of a store's evaluation."""

from __future__ import annotations

from .evaluate import (
    add_evaluation_arguments,
    evaluation_options,
    resolved_targets,
    warn_if_the_saved_evaluation_shrinks,
)


def _run(args):
    from ..evaluate import write_report

    options = evaluation_options(args)
    from ._args import dask_client, store_path

    store = store_path(args)
    with resolved_targets(args.targets, store, args.out) as targets:
        with dask_client(args), warn_if_the_saved_evaluation_shrinks(store):
            index = write_report(store, args.out, targets, gene=args.gene, **options)
    print(f"wrote {index}  (open it in a browser; figures and viewers in {index.parent})")


def register(sub):
    p = sub.add_parser(
        "report",
        help="write an HTML report (tables and figures)",
        description="Write an HTML report of a store: reconstruction, 2-D embeddings and, with "
        "--targets (or after `brainzarr evaluate`), downstream prediction under the "
        "random and the blocked split.",
    )
    add_evaluation_arguments(p)
    p.add_argument("--gene", help="the gene shown in an interactive slice viewer (default: the store's first)")
    p.set_defaults(func=_run)
