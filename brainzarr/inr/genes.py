"""Selecting genes of a fitted model by symbols, count, slice or positions."""

from __future__ import annotations

import numpy as np

from ..sources.table import resolve_genes

__all__ = ["gene_positions"]


def gene_positions(known, genes=None) -> np.ndarray:
    """Positions in ``known`` of ``genes``: None (all), an int n (n evenly spaced), symbols
    (list or comma-separated string), a slice, or an integer index array (passed through)."""
    if genes is None:
        return np.arange(len(known))
    if isinstance(genes, slice):
        return np.arange(len(known))[genes]
    if isinstance(genes, np.ndarray) and genes.dtype.kind in "iu":
        return genes
    position = {g: i for i, g in enumerate(known)}
    return np.array([position[g] for g in resolve_genes(genes, known)], dtype=np.int64)
