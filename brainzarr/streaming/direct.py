"""Which dask arrays a local pass may read without dask: those whose row blocks one call of the
store's reader gives (``expression_rows``' arrays and ``open_store``'s packed arrays).

Computing a slice of a dask array walks its graph (time and memory growing with the number of
blocks) and, for ``open_store``'s arrays, decodes 4,096 x 128 chunks one task each; a pass over a
registered array calls the reader once per row block instead.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["direct_reads", "register_direct"]

#: dask array name -> (reader, [(a, b, keep) per row block]), the newest last
_DIRECT: OrderedDict = OrderedDict()
_DIRECT_MAX = 64


def direct_reads(X):
    """(reader, blocks) for a registered dask array, unchanged since, else None."""
    return _DIRECT.get(getattr(X, "name", None))


def register_direct(X, reader, reads=None) -> None:
    """Let local passes over ``X`` call ``reader(a, b, keep)`` for its row blocks instead of
    computing them through dask; ``reads``: one ``(a, b, keep)`` per row chunk of ``X`` (default:
    the row chunks themselves, every row kept)."""
    if reads is None:
        bounds = np.cumsum((0, *X.chunks[0]))
        reads = [(int(a), int(b), None) for a, b in zip(bounds[:-1], bounds[1:])]
    _DIRECT[X.name] = (reader, reads)
    _DIRECT.move_to_end(X.name)
    while len(_DIRECT) > _DIRECT_MAX:
        _DIRECT.popitem(last=False)
