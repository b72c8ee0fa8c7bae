"""``brainzarr check``: is every chunk of a store present and whole?"""

from __future__ import annotations


def _run(args):
    from ..integrity import check_store
    from ._args import store_path

    report = check_store(store_path(args), repair=args.repair)
    print(report.describe())
    return 0 if report.ok or (args.repair and not report.damaged) else 2


def register(sub):
    p = sub.add_parser(
        "check",
        help="verify every chunk of a store (and remove leftovers with --repair)",
        description="Read every chunk of the store's expression and result arrays (verifying checksums "
        "where the store has them); report missing or damaged chunks, scratch folders left by "
        "interrupted writers, and the command that rebuilds what is lost. Exit status 2 when "
        "something is damaged.",
    )
    from ._args import add_storage_arguments, add_store_argument

    add_store_argument(p)
    add_storage_arguments(p)
    p.add_argument(
        "--repair",
        action="store_true",
        help="remove leftovers of dead writers and mark damaged expression blocks for the next build to redo",
    )
    p.set_defaults(func=_run)
