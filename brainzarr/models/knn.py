"""Exact nearest neighbours whose answer for a row does not depend on the rows queried with it.

Voxels that took the same AHBA sample are exact copies (at 4 mm about eight per sample), so
distances tie constantly. scikit-learn's brute-force search orders equal distances
differently depending on how many rows are queried at once (its reductions chunk and merge
heaps by batch size), so a streamed transform would pick different copies — with different
embedding positions — than an in-memory one. :class:`NeighbourIndex` breaks ties by training
index: it asks scikit-learn for enough extra neighbours to hold any tie group whole (the
largest number of identical reference rows) and sorts them by (distance, index).
"""

from __future__ import annotations

import numpy as np
from sklearn import config_context
from sklearn.neighbors import NearestNeighbors

from ..exceptions import InputError

__all__ = ["NeighbourIndex"]

#: working memory (MiB) of scikit-learn's blocked distance computations
WORKING_MEMORY = 128


class NeighbourIndex:
    """Exact Euclidean k-nearest-neighbour search over ``reference`` rows, ties by index."""

    def __init__(self, reference: np.ndarray):
        reference = np.ascontiguousarray(reference, dtype=np.float32)
        if reference.ndim != 2 or len(reference) == 0:
            raise InputError(f"need a non-empty 2-D reference, got shape {reference.shape}")
        _, counts = np.unique(reference, axis=0, return_counts=True)
        self.n_samples = len(reference)
        self.max_copies = int(counts.max())
        self._nn = NearestNeighbors(algorithm="brute").fit(reference)

    def query(self, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances float32, indices) of the ``k`` nearest reference rows, nearest first."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        k = min(int(k), self.n_samples)
        wide = min(k + self.max_copies - 1, self.n_samples)
        with config_context(working_memory=WORKING_MEMORY):
            dist, idx = self._nn.kneighbors(X, n_neighbors=wide)
        order = np.lexsort((idx, dist), axis=1)[:, :k]
        return (np.take_along_axis(dist, order, axis=1).astype(np.float32), np.take_along_axis(idx, order, axis=1))
