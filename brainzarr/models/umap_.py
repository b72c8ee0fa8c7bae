"""UMAP with an out-of-sample transform and a learned decoder at every dimension (umap-learn).

Fit (training voxels): the streamed PCA of :mod:`.neighbour` reduces the rows to
``pca_components`` scores; their exact ``n_neighbors`` nearest neighbours are computed
once (brute force) and handed to ``umap.UMAP`` as ``precomputed_knn``, which then builds the
fuzzy graph and optimises the layout exactly as usual (30 neighbours, min_dist 0.1 as in the
study; spectral initialisation; seeded, hence single-threaded and reproducible).

Why not umap-learn's own ``transform`` and ``inverse_transform``
---------------------------------------------------------------
* A fitted ``umap.UMAP`` keeps its training data, a pynndescent search index and numba state:
  it cannot be rebuilt from plain arrays, only pickled, and brainzarr stores no pickles.
* Its ``transform`` of a batch depends on the batch: the edge sampling rate is normalised by
  the batch's strongest edge and the epoch count drops from 100 to 30 above 10,000 points, so
  streaming blocks would change the result.
* Its ``inverse_transform`` triangulates the embedding (Delaunay) and takes hours from 8-D on
  (lmcinnes/umap #325); the study reconstructed only at 2-D (and 4-D at 8 mm).

So brainzarr stores the training PCA scores, the training embedding and the curve parameters
``a``, ``b`` as arrays and places new points with umap-learn's own transform steps
(``smooth_knn_dist``, ``compute_membership_strengths``, ``init_graph_transform``,
``optimize_layout_euclidean`` with the training embedding fixed): exact nearest training
neighbours, membership strengths, a start at the membership-weighted mean of their
positions, then ``transform_n_epochs`` epochs of SGD with negative sampling (learning rate a
quarter of ``learning_rate``, as umap-learn). Three changes make each point's placement
independent of the others in its block: edges are sampled in proportion to their strength
relative to the strongest possible membership (1), not the batch's strongest; the epoch
count is fixed; and the bandwidth floor of ``smooth_knn_dist`` (a thousandth of the mean
neighbour distance, for near-duplicates) is taken per point, not over the batch. Neighbour ties
(identical training voxels) are broken by index (:mod:`.knn`). umap-learn already seeds each
point's negative sampling from the point's
start; with the fixed ``random_state`` the transform is deterministic, and a dask transform
equals the in-memory one. Training voxels keep their fitted positions (:mod:`.neighbour`).

Reconstruction at every dimension: the decoder of :mod:`.decoder` (k-nearest-neighbour
regression in the embedding by default), embedding -> PCA scores -> genes.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from .._optional import require
from .._validation import Bound
from ..exceptions import InputError
from .knn import NeighbourIndex
from .neighbour import NeighbourEmbedding

__all__ = ["UMAP"]

_INT32 = np.iinfo(np.int32)


class UMAP(NeighbourEmbedding):
    """UMAP of (voxels, genes) with out-of-sample ``transform`` and a learned inverse.

    Parameters
    ----------
    n_components : int
        Embedding dimension (2..128 in the study; any).
    n_neighbors : int
        Size of the local neighbourhoods (the study: 30).
    min_dist : float
        Minimum distance between embedded points (the study: 0.1).
    spread : float
        Scale of the embedded points (with ``min_dist`` sets the curve ``a``, ``b``).
    n_epochs : int, optional
        Training epochs (umap-learn's default: 500 below 10,000 voxels, else 200).
    learning_rate : float
        Initial SGD step of the layout (transform uses a quarter of it).
    negative_sample_rate : int
        Negative samples per positive edge.
    init : {'spectral', 'pca', 'random'}
        Initial layout of the training voxels.
    transform_n_epochs : int
        SGD epochs placing new points (umap-learn's transform uses 100 for up to 10,000 points).
    pca_components : int
        PCA scores UMAP is run on.
    decoder : {'knn', 'mlp'}
        How ``inverse_transform`` maps the embedding back (see :mod:`.decoder`).
    decoder_components : int
        PCA scores the decoder predicts (its reconstruction ceiling).
    second_decoder : {'mlp', 'knn'} or None
        A second decoder fitted beside ``decoder`` for the other reading of the reconstruction
        error (``inverse_transform_second``): the kNN decoder measures neighbourhoods, the MLP
        decoder compression (:mod:`.decoder`). ``brainzarr fit`` fits the MLP one by default.
    decoder_options : dict, optional
        Keyword arguments of the decoder.
    device : {'auto', 'cpu', 'cuda'}
        Where the MLP decoder trains.
    random_state : int
        Seed of the PCA, the layout, the transform's negative sampling and the decoder.

    Attributes
    ----------
    embedding_ : ndarray (n_train, n_components)
        The training voxels' embedding.
    a_, b_ : float
        UMAP's low-dimensional similarity curve 1 / (1 + a d^(2b)).
    train_scores_, pca_mean_, pca_components_, decoder_ : as for :class:`~.tsne.TSNE`.
    """

    method = "umap"
    _bounds: ClassVar[dict] = {
        "n_neighbors": Bound(2, integer=True),
        "min_dist": Bound(0),
        "spread": Bound(0, low_open=True),
        "n_epochs": Bound(1, integer=True, none=True),
        "learning_rate": Bound(0, low_open=True),
        "negative_sample_rate": Bound(0, integer=True),
        "transform_n_epochs": Bound(1, integer=True),
        "pca_components": Bound(1, integer=True),
        "decoder_components": Bound(1, integer=True),
    }
    _placing = ("umap", "UMAP's transform")

    def __init__(
        self,
        n_components: int = 2,
        *,
        n_neighbors: int = 30,
        min_dist: float = 0.1,
        spread: float = 1.0,
        n_epochs: int | None = None,
        learning_rate: float = 1.0,
        negative_sample_rate: int = 5,
        init: str = "spectral",
        transform_n_epochs: int = 100,
        pca_components: int = 50,
        decoder: str = "knn",
        decoder_components: int = 100,
        decoder_options: dict | None = None,
        second_decoder: str | None = None,
        device: str = "auto",
        random_state: int = 0,
    ):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.spread = spread
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.negative_sample_rate = negative_sample_rate
        self.init = init
        self.transform_n_epochs = transform_n_epochs
        self.pca_components = pca_components
        self.decoder = decoder
        self.decoder_components = decoder_components
        self.decoder_options = decoder_options
        self.second_decoder = second_decoder
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def _embed(self, S):
        umap = require("umap", "UMAP")

        n, d = len(S), int(self.n_components)
        k = int(self.n_neighbors)
        if n <= max(k, d + 1):
            raise InputError(
                f"UMAP with n_neighbors={k} and n_components={d} needs more than "
                f"{max(k, d + 1)} training voxels, got {n}"
            )
        dist, idx = NeighbourIndex(S).query(S, k)  # each voxel's own row included
        model = umap.UMAP(
            n_neighbors=k,
            n_components=d,
            min_dist=float(self.min_dist),
            spread=float(self.spread),
            n_epochs=self.n_epochs,
            learning_rate=float(self.learning_rate),
            negative_sample_rate=int(self.negative_sample_rate),
            init=self.init,
            random_state=self.random_state,
            precomputed_knn=(idx, dist, None),
            tqdm_kwds={"disable": True},  # the job's bar counts brainzarr's passes
            verbose=False,
        )
        with warnings.catch_warnings():
            # "n_jobs overridden by random_state" and "no search index: transform unavailable":
            # both expected, brainzarr seeds the fit and transforms by itself
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            Y = model.fit_transform(S)
        self.a_, self.b_ = float(model._a), float(model._b)
        return Y

    # ------------------------------------------------------------------ out-of-sample
    def _placement_neighbours(self) -> int:
        return int(self.n_neighbors)

    def _place(self, S, dist, idx):
        import scipy.sparse as sp
        from umap.layouts import optimize_layout_euclidean
        from umap.umap_ import (
            compute_membership_strengths,
            init_graph_transform,
            smooth_knn_dist,
        )

        k = idx.shape[1]
        dist = np.ascontiguousarray(dist, dtype=np.float32)
        # umap-learn's transform uses local_connectivity - 1 = 0 for new points. Row by row: for
        # a tiny bandwidth smooth_knn_dist falls back on the mean distance of all rows given
        sigmas, rhos = np.empty(len(S), np.float32), np.empty(len(S), np.float32)
        for i in range(len(S)):
            sigmas[i : i + 1], rhos[i : i + 1] = smooth_knn_dist(dist[i : i + 1], float(k), local_connectivity=0.0)
        rows, cols, vals, _ = compute_membership_strengths(
            np.ascontiguousarray(idx, dtype=np.int32), dist, sigmas, rhos, bipartite=True
        )
        n_train = len(self.embedding_)
        graph = sp.coo_matrix((vals, (rows, cols)), shape=(len(S), n_train))
        csr = graph.tocsr()
        csr.eliminate_zeros()
        start = init_graph_transform(csr, self.embedding_)
        n_epochs = int(self.transform_n_epochs)
        # strength relative to the strongest possible membership (1), not the batch's strongest
        graph.data[graph.data < 1.0 / n_epochs] = 0.0
        graph.eliminate_zeros()
        epochs_per_sample = (1.0 / graph.data).astype(np.float64)
        rng_state = np.random.RandomState(self.random_state).randint(_INT32.min, _INT32.max, 3).astype(np.int64)
        placed = optimize_layout_euclidean(
            np.ascontiguousarray(start, dtype=np.float32),
            self.embedding_.astype(np.float32, copy=True),
            graph.row,
            graph.col,
            n_epochs,
            n_train,
            epochs_per_sample,
            self.a_,
            self.b_,
            rng_state,
            1.0,
            float(self.learning_rate) / 4.0,
            float(self.negative_sample_rate),
            parallel=False,
            verbose=False,
            tqdm_kwds={"disable": True},
            move_other=False,
        )
        return np.asarray(placed, dtype=np.float32)

    # ------------------------------------------------------------------ persistence
    def _extra_arrays(self):
        return {"umap_a": ((), np.float64(self.a_)), "umap_b": ((), np.float64(self.b_))}

    def _set_extra_arrays(self, ds):
        self.a_ = float(ds["umap_a"].values)
        self.b_ = float(ds["umap_b"].values)
