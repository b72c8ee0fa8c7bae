"""What t-SNE and UMAP share: PCA reduction, out-of-sample placement, a learned decoder.

Pipeline of a neighbour embedding in brainzarr
----------------------------------------------
1. **PCA first.** The training rows (4 mm, all genes: 23.5k x 15,633 = 1.5 GB) are reduced
   with brainzarr's streamed PCA (:class:`~brainzarr.models.pca.PCA`, one call) to
   ``q = max(pca_components, decoder_components)`` components; peak memory is one row block
   plus the (voxels x q) scores. The embedding is learned on the first ``pca_components``
   scores (50 by default, the usual preprocessing of t-SNE and UMAP: it removes noise
   dimensions and makes neighbour search cheap); components are nested, so one fit serves
   both uses.
2. **Embed the training voxels** (the subclass: openTSNE or umap-learn).
3. **Decoder.** A decoder (:mod:`.decoder`) learns embedding -> the first
   ``decoder_components`` PCA scores of the training voxels; ``inverse_transform`` maps its
   output back to genes with the PCA basis. Its ceiling is the PCA reconstruction with
   ``decoder_components`` components.

Out-of-sample transform
-----------------------
A row is projected on the PCA basis and its nearest training voxels are found exactly (brute
force, ties broken by training index: :mod:`.knn`). A row that coincides with a training voxel (distance below 1e-5 of
the scores' RMS norm; at 4 mm many voxels are exact copies, as each takes its nearest
sample) gets that voxel's fitted position (the first of several identical ones), so training
voxels keep their embedding up to such duplicates. Every
other row is placed by the subclass against the fixed training embedding. Each row is placed
independently of the others in its block, so a streamed (dask) transform equals the
in-memory one.

Persistence
-----------
Plain arrays, no pickles: PCA mean and components, the training voxels' PCA scores, their
embedding, the decoder's weights (none for the kNN decoder, whose state is the training pairs
themselves) and what the subclass needs. The neighbour index is rebuilt on load.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from sklearn.utils.validation import check_is_fitted

from .._optional import check_installed
from ..exceptions import InputError
from .base import Representation
from .decoder import DECODERS, make_decoder
from .knn import NeighbourIndex

__all__ = ["NeighbourEmbedding"]

#: the second decoder's settings when it is the MLP one
SECOND_MLP = {"hidden": (128, 128), "max_epochs": 60, "patience": 8, "batch_size": 256}
#: rows coinciding with a training voxel: distance below this fraction of the scores' RMS norm
MATCH_TOL = 1e-5
#: rows per float64 block of the PCA projection (512 x 15,633 genes x 8 bytes = 64 MB)
SCORE_ROWS = 512


class NeighbourEmbedding(Representation):
    """Base class of :class:`~brainzarr.models.tsne.TSNE` and :class:`~brainzarr.models.umap_.UMAP`.

    Subclasses set the parameters ``n_components``, ``pca_components``, ``decoder``,
    ``decoder_components``, ``decoder_options``, ``random_state`` (and ``device``) and implement

    * ``_check_params()``: validate parameters (called before the PCA pass);
    * ``_embed(S) -> Y``: embed the training voxels' PCA inputs S (n, p);
    * ``_placement_neighbours() -> k``: training neighbours ``_place`` needs;
    * ``_place(S, dist, idx) -> Y``: place new rows given their k nearest training voxels;
    * ``_extra_arrays()`` / ``_set_extra_arrays(ds)``: their own state as arrays;

    and ``_placing = (import name, purpose)``: the package ``_place`` needs.
    """

    _placing: tuple[str, str] | None = None

    # ------------------------------------------------------------------ fitting
    def _fit(self, X):
        from .pca import PCA

        n, g = X.shape
        self._check_params()  # before the PCA pass, so bad settings fail at once
        decoder = self._new_decoder()
        q = min(max(int(self.pca_components), int(self.decoder_components)), n, g)
        pca = PCA(n_components=q, random_state=self.random_state).fit(X)
        scores = pca.transform(X)
        if isinstance(scores, da.Array):
            scores = scores.compute()
        self.pca_mean_ = np.asarray(pca.mean_, dtype=np.float32)
        self.pca_components_ = np.asarray(pca.components_, dtype=np.float32)
        self.train_scores_ = np.ascontiguousarray(scores, dtype=np.float32)
        self._index_cache = {}
        self.embedding_ = np.ascontiguousarray(self._embed(self.train_scores_[:, : self.n_inputs_]), dtype=np.float32)
        self.decoder_ = decoder.fit(self.embedding_, self.train_scores_[:, : self.n_decoded_])
        second = self._new_second_decoder()
        if second is not None:
            self.second_decoder_ = second.fit(self.embedding_, self.train_scores_[:, : self.n_decoded_])

    @property
    def n_inputs_(self) -> int:
        """PCA scores the embedding is learned from."""
        return min(int(self.pca_components), self.pca_components_.shape[0])

    @property
    def n_decoded_(self) -> int:
        """PCA scores the decoder predicts."""
        return min(int(self.decoder_components), self.pca_components_.shape[0])

    def _new_second_decoder(self):
        kind = getattr(self, "second_decoder", None)
        if kind is None or kind == self.decoder:
            return None
        if kind not in DECODERS:
            raise InputError(f"unknown second_decoder {kind!r}; choose from {', '.join(DECODERS)}")
        # a smaller, shorter-trained network than decoder="mlp" gets: the second reading is
        # computed by default, so it must stay cheap (seconds at 8 mm, a minute or two at 4 mm)
        options = SECOND_MLP if kind == "mlp" else None
        return make_decoder(kind, options, random_state=self.random_state, device=getattr(self, "device", "auto"))

    def inverse_transform_second(self, Z) -> np.ndarray:
        """The reconstruction through the second decoder (NumPy in, NumPy out)."""
        return self._inverse_block(np.asarray(Z, dtype=np.float32), self.second_decoder_)

    def _new_decoder(self):
        return make_decoder(
            self.decoder, self.decoder_options, random_state=self.random_state, device=getattr(self, "device", "auto")
        )

    # ------------------------------------------------------------------ applying
    def transform(self, X):
        """Embed X: (voxels, genes) -> (voxels, n_components), in X's form."""
        if self._placing is not None:
            # a model loaded from a store may meet a machine without the package its fit used
            check_is_fitted(self)
            check_installed(*self._placing)
        return super().transform(X)

    def _scores(self, X: np.ndarray, width: int) -> np.ndarray:
        """PCA scores, computed in float64 and rounded to float32.

        BLAS picks different kernels for different numbers of rows, so a float32 product's last
        bits depend on the block a row is in; UMAP's transform seeds each point's negative
        sampling from the bits of its start, so those bits must not. Rounding the float64
        product makes them a function of the row alone.
        """
        C = self.pca_components_[:width].astype(np.float64).T
        out = np.empty((len(X), width), dtype=np.float32)
        for a in range(0, len(X), SCORE_ROWS):
            out[a : a + SCORE_ROWS] = (X[a : a + SCORE_ROWS] - self.pca_mean_).astype(np.float64) @ C
        return out

    def _neighbour_index(self):
        # built on first use and kept in a holder made at fit, so transform leaves __dict__ alone
        cache = self.__dict__.get("_index_cache")
        if cache is None:
            cache = self._index_cache = {}
        if "index" not in cache:
            S = self.train_scores_[:, : self.n_inputs_]
            tol = MATCH_TOL * float(np.sqrt(np.mean(np.sum(S.astype(np.float64) ** 2, axis=1))))
            cache["index"] = (NeighbourIndex(S), tol)
        return cache["index"]

    def _transform_block(self, X):
        S = self._scores(X, self.n_inputs_)
        out = np.empty((len(S), self._embedding_width()), dtype=np.float32)
        if len(S) == 0:
            return out
        index, tol = self._neighbour_index()
        dist, idx = index.query(S, self._placement_neighbours())
        same = dist[:, 0] <= tol
        if same.any():  # identical training voxels: the first of them, so equal rows map alike
            ties = np.where(dist[same] <= tol, idx[same], np.iinfo(idx.dtype).max)
            out[same] = self.embedding_[ties.min(axis=1)]
        if not same.all():
            out[~same] = self._place(S[~same], dist[~same], idx[~same])
        return out

    def _inverse_block(self, Z, decoder=None):
        T = (decoder or self.decoder_).predict(np.asarray(Z, dtype=np.float32))
        return T @ self.pca_components_[: self.n_decoded_] + self.pca_mean_

    # ------------------------------------------------------------------ persistence
    def _param_arrays(self):
        arrays = {
            "pca_mean": (("gene",), self.pca_mean_),
            "pca_components": (("pca_component", "gene"), self.pca_components_),
            "train_scores": (("train_voxel", "pca_component"), self.train_scores_),
            "train_embedding": (("train_voxel", "component"), self.embedding_),
        }
        arrays.update(self.decoder_.param_arrays())
        if getattr(self, "second_decoder_", None) is not None:
            arrays.update(self.second_decoder_.param_arrays())  # knn has none: no clash with the first
        arrays.update(self._extra_arrays())
        return arrays

    def _set_param_arrays(self, ds):
        self.pca_mean_ = ds["pca_mean"].values.astype(np.float32)
        self.pca_components_ = ds["pca_components"].values.astype(np.float32)
        self.train_scores_ = np.ascontiguousarray(ds["train_scores"].values, dtype=np.float32)
        self.embedding_ = np.ascontiguousarray(ds["train_embedding"].values, dtype=np.float32)
        self._index_cache = {}
        if "gene" in ds.coords:
            self.genes_ = ds["gene"].values
        self.decoder_ = self._new_decoder().load(self.embedding_, self.train_scores_[:, : self.n_decoded_], ds)
        second = self._new_second_decoder()
        if second is not None:
            self.second_decoder_ = second.load(self.embedding_, self.train_scores_[:, : self.n_decoded_], ds)
        self._set_extra_arrays(ds)

    def to_dataset(self) -> xr.Dataset:
        ds = super().to_dataset()
        if getattr(self, "genes_", None) is not None:
            ds = ds.assign_coords(gene=np.asarray(self.genes_))
        ds.attrs["n_train"] = int(self.embedding_.shape[0])
        return ds

    def _check_params(self) -> None:
        pass

    def _extra_arrays(self) -> dict:
        return {}

    def _set_extra_arrays(self, ds) -> None:
        pass

    def __getstate__(self):
        # the neighbour index is rebuilt on demand; no need to ship it to dask workers
        state = dict(super().__getstate__())
        state["_index_cache"] = {}
        return state
