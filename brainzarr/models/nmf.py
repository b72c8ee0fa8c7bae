"""Non-negative matrix factorisation streamed over row blocks.

Two solvers learn ``H`` (components x genes), keeping only ``H`` and k x genes statistics, so
memory does not grow with voxels:

* ``solver="anls"`` (default): alternating non-negative least squares, one streamed pass per
  iteration. Each pass solves every block's ``W_b = argmin_{W >= 0} ||B - W H||`` (see below)
  and accumulates ``W^T W`` and ``W^T X`` (a map-reduce: it also runs on a
  dask.distributed cluster); ``H`` is then updated from those sums by HALS sweeps (Cichocki &
  Phan 2009) — the exact batch NMF objective, streamed. It starts from NNDSVDa on a random
  subsample of rows and stops when the training loss improves by less than ``tol`` per pass.
  It tracks scikit-learn's in-memory ``NMF`` within a few passes, where ``MiniBatchNMF``
  stays worse (``docs/design.md``).
* ``solver="minibatch"``: scikit-learn's ``MiniBatchNMF.partial_fit`` (online NMF, Mairal et al.
  2010): every epoch reads the row blocks in random order, shuffles the rows inside each block
  and feeds mini-batches of ``batch_size`` rows; stops when an epoch changes ``H`` by less
  than ``tol`` (relative).

The embedding of any voxel is ``W = argmin_{W >= 0} ||x - W H||`` for the learned ``H``: least
squares clipped at zero, then HALS sweeps to convergence (faster than scikit-learn's
coordinate descent from zero, to the same optimum); deterministic, the same for training and
test voxels. The reconstruction ``W H`` is
non-negative by construction.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.decomposition import MiniBatchNMF
from sklearn.decomposition._nmf import _initialize_nmf

from .._validation import Bound, non_finite_input
from ..exceptions import InputError
from ..streaming.passes import block_reduce, cache_if_small, stream_blocks, take_rows
from .base import Representation

__all__ = ["NMF", "SOLVERS"]

SOLVERS = ("anls", "minibatch")
_FLOOR = 1e-10


class NMF(Representation):
    """Streamed NMF of (voxels, genes) with non-negative data.

    Parameters
    ----------
    n_components : int
    solver : {'anls', 'minibatch'}
        Streamed alternating least squares (exact objective, one pass per iteration) or
        scikit-learn's ``MiniBatchNMF.partial_fit`` over shuffled blocks (module docstring).
    max_epochs : int
        Passes over the training data at most.
    tol : float
        'anls': stop when a pass lowers the training loss by less than this fraction;
        'minibatch': when an epoch changes ``H`` by less than this (relative norm).
    batch_size : int
        'minibatch': rows per ``partial_fit`` call.
    forget_factor : float
        'minibatch': ``MiniBatchNMF``'s weight of past statistics.
    init_rows : int
        'anls': rows sampled for the NNDSVDa start.
    hals_sweeps : int
        'anls': HALS sweeps over the rows of ``H`` per pass.
    w_max_iter, w_tol : int, float
        HALS sweeps at most, and their relative tolerance, when solving ``W`` for given rows.
    cache_bytes : int, optional
        Hold the training data in memory when it takes at most this many bytes (float32), so the
        passes read the store once; above it (or None) every pass streams from the store.
    block_rows : int, optional
        Rows read per block (default: the dask array's row chunks).
    random_state : int
        Seeds the subsample, block order, row shuffling and the initialisation.

    Attributes
    ----------
    components_ : ndarray (n_components, n_features), non-negative
    n_epochs_ : int
    loss_ : ndarray (n_epochs_,)
        'anls': training loss ||X - W H||^2 / (2 n) at each pass (before its ``H`` update);
        'minibatch': relative change of ``H`` in each epoch.
    """

    method = "nmf"
    _bounds: ClassVar[dict] = {
        "max_epochs": Bound(1, integer=True),
        "tol": Bound(0),
        "batch_size": Bound(1, integer=True),
        "forget_factor": Bound(0, 1),
        "init_rows": Bound(1, integer=True),
        "hals_sweeps": Bound(1, integer=True),
        "w_max_iter": Bound(1, integer=True),
        "w_tol": Bound(0),
        "block_rows": Bound(1, integer=True, none=True),
        "cache_bytes": Bound(0, integer=True, none=True),
    }
    components_within_features = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    def __init__(
        self,
        n_components: int = 2,
        *,
        solver: str = "anls",
        max_epochs: int = 30,
        tol: float = 1e-4,
        batch_size: int = 2048,
        forget_factor: float = 0.7,
        init_rows: int = 2048,
        hals_sweeps: int = 10,
        w_max_iter: int = 100,
        w_tol: float = 1e-4,
        block_rows: int | None = None,
        cache_bytes: int | None = 2**30,
        random_state: int = 0,
    ):
        self.n_components = n_components
        self.solver = solver
        self.max_epochs = max_epochs
        self.tol = tol
        self.batch_size = batch_size
        self.forget_factor = forget_factor
        self.init_rows = init_rows
        self.hals_sweeps = hals_sweeps
        self.w_max_iter = w_max_iter
        self.w_tol = w_tol
        self.block_rows = block_rows
        self.cache_bytes = cache_bytes
        self.random_state = random_state

    def _fit(self, X):
        X, self._block_rows = cache_if_small(X, self.cache_bytes, self.block_rows)
        if self.solver not in SOLVERS:
            raise InputError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        k = int(self.n_components)
        if k > min(X.shape):
            raise InputError(f"n_components={k} must be at most min(n_samples, n_features) = {min(X.shape)}")
        rng = np.random.default_rng(self.random_state)
        fit = self._fit_anls if self.solver == "anls" else self._fit_minibatch
        H, losses = fit(X, rng)
        self.components_ = np.asarray(H, dtype=np.float32)
        self.n_epochs_ = len(losses)
        self.loss_ = np.asarray(losses, dtype=np.float64)

    # ------------------------------------------------------------------ solvers
    def _fit_anls(self, X, rng):
        n, k = X.shape[0], int(self.n_components)
        rows = np.sort(rng.choice(n, size=min(int(self.init_rows), n), replace=False))
        sub = take_rows(X, rows)
        _check_nonnegative(sub)
        _, H = _initialize_nmf(sub, k, init="nndsvda", random_state=int(self.random_state))
        H = H.astype(np.float32)
        losses = []
        for epoch in range(int(self.max_epochs)):

            def stats(B, H=H):
                _check_nonnegative(B)
                W = self._solve_w(B, H)  # float32 products, float64 sums
                return (
                    (W.T @ W).astype(np.float64),
                    (W.T @ B).astype(np.float64),
                    float(np.einsum("ij,ij->", B, B, dtype=np.float64)),
                )

            WtW, WtX, xx = block_reduce(X, stats, block_rows=self._block_rows, desc=f"NMF pass {epoch + 1}")
            H64 = H.astype(np.float64)
            losses.append((xx - 2 * np.sum(WtX * H64) + np.sum(WtW * (H64 @ H64.T))) / (2 * n))
            # a tiny floor instead of 0: a row of H that empties could never come back
            H = _hals(H64, WtW, WtX, int(self.hals_sweeps), floor=_FLOOR).astype(np.float32)
            if len(losses) > 1 and losses[-2] - losses[-1] < self.tol * abs(losses[-2]):
                break
        return H, losses

    def _fit_minibatch(self, X, rng):
        k, size = int(self.n_components), int(self.batch_size)
        est = MiniBatchNMF(
            n_components=k,
            batch_size=size,
            forget_factor=self.forget_factor,
            init="nndsvda",
            fresh_restarts=False,
            random_state=int(self.random_state),
        )
        changes = []
        for epoch in range(int(self.max_epochs)):
            before = est.components_.copy() if hasattr(est, "components_") else None
            for block in stream_blocks(X, block_rows=self._block_rows, rng=rng, desc=f"NMF epoch {epoch + 1}"):
                _check_nonnegative(block)
                block = block[rng.permutation(len(block))]
                for a in range(0, len(block), size):
                    batch = block[a : a + size]
                    if hasattr(est, "components_") or len(batch) >= k:  # NNDSVDa needs k rows to start
                        est.partial_fit(batch)
            if before is None:
                changes.append(np.inf)
                continue
            changes.append(float(np.linalg.norm(est.components_ - before) / max(np.linalg.norm(before), 1e-300)))
            if changes[-1] < self.tol:
                break
        return est.components_, changes

    def _solve_w(self, X, H):
        """Non-negative least squares W for rows X and fixed H: least squares clipped at 0,
        then HALS sweeps over the columns of W until they change by less than ``w_tol``."""
        H = np.asarray(H, dtype=np.float32)
        G = H @ H.T
        R = H @ np.asarray(X, dtype=np.float32).T  # (k, rows)
        start = np.linalg.lstsq(G.astype(np.float64), R.astype(np.float64), rcond=None)[0]
        Wt = _hals(np.maximum(start, 0).astype(np.float32), G, R, int(self.w_max_iter), self.w_tol, 0.0)
        return Wt.T

    # ------------------------------------------------------------------ applying
    def _transform_block(self, X):
        return self._solve_w(np.clip(X, 0, None), self.components_)

    def _inverse_block(self, Z):
        return Z @ self.components_

    # ------------------------------------------------------------------ persistence
    def _param_arrays(self):
        return {"components": (("component", "gene"), self.components_), "loss": (("epoch",), self.loss_)}

    def _set_param_arrays(self, ds):
        self.components_ = ds["components"].values.astype(np.float32)
        self.loss_ = ds["loss"].values
        self.n_epochs_ = len(self.loss_)


def _check_nonnegative(block):
    low = block.min() if block.size else 0
    if np.isnan(low):
        raise non_finite_input()
    if low < 0:
        raise InputError("Negative values in data passed to NMF: it needs non-negative data")


def _hals(M, G, R, max_sweeps, tol=0.0, floor=0.0):
    """HALS (Cichocki & Phan 2009) for ``min_{M >= floor} ||Y - M^T F||^2`` over M (k, m), given
    only ``G = F F^T`` (k, k) and ``R = F Y^T`` (k, m): rows updated one at a time,
    ``M_j <- max(floor, M_j + (R_j - G_j M) / G_jj)``. Stops early when a sweep changes M by less
    than ``tol`` (relative). Used for both factors: W^T (F = H, Y = X) and H (F = W^T, Y = X^T).
    """
    M = M.copy()
    for _ in range(max_sweeps):
        before = M.copy() if tol else None
        for j in range(M.shape[0]):
            if G[j, j] > 0:
                M[j] = np.maximum(floor, M[j] + (R[j] - G[j] @ M) / G[j, j])
        if tol and np.linalg.norm(M - before) <= tol * max(np.linalg.norm(M), np.finfo(np.float32).tiny):
            break
    return M
