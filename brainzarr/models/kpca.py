"""RBF kernel PCA at scale: Nyström landmarks + streamed PCA, and a learned pre-image.

Exact ``KernelPCA`` needs the n x n kernel (O(n^2) memory, O(n^3) time; 30k rows took 52 min
in scikit-learn #18013). Here:

1. **Landmarks**: ``n_landmarks`` training rows drawn at random (seeded). ``gamma=None`` is
   scikit-learn's default ``1 / n_genes`` (what the reference study used); ``gamma="median"``
   is the median heuristic ``1 / median ||l_i - l_j||^2`` over landmark pairs.
2. **Nyström features** ``phi(x) = k(x, L) U_r S_r^{-1/2}`` from the eigen-decomposition of
   the landmark kernel ``K_LL = U S U^T``, keeping eigenvalues above ``1e-10 max(S)`` (as
   scikit-learn's ``Nystroem``, which instead clips them). ``phi(x) . phi(y)`` approximates
   ``k(x, y)``. Distances are taken after subtracting the landmarks' mean, so float32 products
   do not lose the small differences between nearby voxels.
3. **Kernel PCA** = PCA of the features, streamed: :class:`~brainzarr.models.pca.PCA` with the
   exact covariance solver over a lazy, row-blockwise feature map (features x features
   float64, 32 MB for 2,000 landmarks). The embedding is the PCA scores of ``phi(x)``, which is
   what ``KernelPCA.transform`` returns (projections on unit feature-space eigenvectors).
4. **Pre-image** (reconstruction): kernel ridge regression from the embedding back to the
   genes, as ``KernelPCA(fit_inverse_transform=True)`` does, fitted on ``n_preimage`` training
   rows (by default the landmarks, whose expression is already in memory), with the genes'
   mean subtracted (far from the data the prediction falls back to the mean). Unlike
   scikit-learn, which reuses the forward ``gamma`` on the embedding and ``alpha=1``, the
   ridge's RBF width and ``alpha`` are chosen by exact leave-one-out error (one
   eigen-decomposition per width, every alpha from it) on up to 1,000 of those rows and 256
   genes; the chosen values are ``inverse_gamma_`` and ``alpha_``. A fixed ``alpha`` or ``inverse_gamma`` skips the
   search on that axis.

Cost per streamed pass: rows x landmarks x genes (the kernel block), about 15 x a randomized
PCA pass at 2,000 landmarks.
"""

from __future__ import annotations

from typing import ClassVar

import dask.array as da
import numpy as np

from .._validation import Bound, non_finite_input
from ..exceptions import InputError
from ..streaming.passes import as_array, take_rows
from .base import Representation
from .pca import PCA

__all__ = ["KernelPCA"]

_EIG_FLOOR = 1e-10
_GAMMA_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)
_ALPHAS = tuple(10.0 ** np.arange(-6, 2))
_LOO_GENES = 256
_LOO_ROWS = 1000


class KernelPCA(Representation):
    """RBF kernel PCA of (voxels, genes) with Nyström landmarks and a kernel-ridge pre-image.

    Parameters
    ----------
    n_components : int
    kernel : {'rbf'}
    gamma : float, 'median' or None
        RBF width ``exp(-gamma ||x - y||^2)``; None = 1 / n_genes (scikit-learn's default).
    n_landmarks : int
        Nyström landmarks (training rows sampled at random).
    n_preimage : int, optional
        Training rows the pre-image ridge is fitted on (default: the landmarks).
    alpha : float, optional
        Ridge penalty of the pre-image; None = chosen by leave-one-out error.
    inverse_gamma : float, optional
        RBF width of the pre-image kernel on the embedding; None = chosen by leave-one-out error
        among multiples of the median heuristic.
    block_rows : int, optional
        Rows per streamed block (default: the dask array's row chunks).
    random_state : int
        Seeds the choice of landmarks and pre-image rows.

    Attributes
    ----------
    landmarks_ : ndarray (n_landmarks, n_features)
    center_ : ndarray (n_features,)
        Mean of the landmarks, subtracted before kernel evaluations.
    gamma_ : float
    normalization_ : ndarray (n_landmarks, n_nystrom)
        ``U_r S_r^{-1/2}``: kernel values against the landmarks -> Nyström features.
    feature_mean_, components_ : ndarray
        PCA of the Nyström features (mean; unit axes, (n_components, n_nystrom)).
    eigenvalues_ : ndarray (n_components,)
        Variance of the embedding along each component.
    preimage_points_ : ndarray (n_preimage, n_components)
        Embedding of the pre-image rows.
    dual_coef_ : ndarray (n_preimage, n_features)
    preimage_mean_ : ndarray (n_features,)
    inverse_gamma_, alpha_ : float
    """

    method = "kpca"
    _bounds: ClassVar[dict] = {
        "gamma": Bound(0, low_open=True, none=True, words=("median",)),
        "n_landmarks": Bound(1, integer=True),
        "n_preimage": Bound(1, integer=True, none=True),
        "alpha": Bound(0, none=True),
        "inverse_gamma": Bound(0, low_open=True, none=True),
        "block_rows": Bound(1, integer=True, none=True),
    }

    def __init__(
        self,
        n_components: int = 2,
        *,
        kernel: str = "rbf",
        gamma=None,
        n_landmarks: int = 2000,
        n_preimage: int | None = None,
        alpha: float | None = None,
        inverse_gamma: float | None = None,
        block_rows: int | None = None,
        random_state: int = 0,
    ):
        self.n_components = n_components
        self.kernel = kernel
        self.gamma = gamma
        self.n_landmarks = n_landmarks
        self.n_preimage = n_preimage
        self.alpha = alpha
        self.inverse_gamma = inverse_gamma
        self.block_rows = block_rows
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def _fit(self, X):
        if self.kernel != "rbf":
            raise InputError(f"only kernel='rbf' is implemented, got {self.kernel!r}")
        n, d = X.shape
        rng = np.random.default_rng(self.random_state)
        m = min(int(self.n_landmarks), n)
        rows = np.sort(rng.choice(n, size=m, replace=False))
        L = take_rows(X, rows)
        if not np.isfinite(L).all():  # the rows beyond the landmarks meet PCA's check
            raise non_finite_input(" (among the landmark rows)")
        self.center_ = L.mean(axis=0)
        self.landmarks_ = L
        Lc = L - self.center_
        sq = _sq_dists(Lc, Lc)
        self.gamma_ = _resolve_gamma(self.gamma, sq, d)
        evals, evecs = np.linalg.eigh(np.exp(-self.gamma_ * sq).astype(np.float64))
        keep = evals > _EIG_FLOOR * evals.max()
        # C order here and after a round trip through the store: identical BLAS results
        self.normalization_ = np.ascontiguousarray(evecs[:, keep] / np.sqrt(evals[keep]), dtype=np.float32)
        r = int(keep.sum())
        if int(self.n_components) > r:
            raise InputError(
                f"n_components={self.n_components} exceeds the rank of the landmark kernel ({r}); "
                "use more landmarks or a larger gamma"
            )

        features = self._features_lazy(X)
        pca = PCA(int(self.n_components), solver="covariance", block_rows=None).fit(features)
        self.feature_mean_ = pca.mean_
        self.components_ = pca.components_
        self.eigenvalues_ = pca.explained_variance_

        if self.n_preimage is None:
            Xp = L
        else:
            prow = np.sort(rng.choice(n, size=min(int(self.n_preimage), n), replace=False))
            Xp = take_rows(X, prow)
        Zp = self._transform_block(Xp)
        self._fit_preimage(Zp.astype(np.float64), Xp.astype(np.float64), rng)

    def _features_lazy(self, X):
        """Nyström features of X's rows: lazy and row-blockwise for dask, eager for NumPy."""
        X = as_array(X)
        width = self.normalization_.shape[1]
        if isinstance(X, da.Array):
            if self.block_rows is not None:
                X = X.rechunk({0: int(self.block_rows)})
            X = X.rechunk({1: -1})
            return X.map_blocks(
                lambda b: self._features(np.asarray(b, dtype=np.float32)),
                chunks=(X.chunks[0], (width,)),
                dtype=np.float32,
            )
        return self._features(np.asarray(X, dtype=np.float32))

    def _features(self, B):
        Lc, L_sq = self._centred_landmarks()
        Bc = B - self.center_
        sq = np.clip((Bc * Bc).sum(axis=1)[:, None] + L_sq[None, :] - 2 * (Bc @ Lc.T), 0, None)
        return np.exp(-self.gamma_ * sq) @ self.normalization_

    def _centred_landmarks(self):
        """Landmarks minus their mean and their squared norms, computed once per fitted model."""
        cached = self.__dict__.get("_landmark_cache")
        if cached is None or cached[0] is not self.landmarks_:
            Lc = self.landmarks_ - self.center_
            cached = (self.landmarks_, Lc, (Lc * Lc).sum(axis=1))
            self._landmark_cache = cached
        return cached[1], cached[2]

    def _fit_preimage(self, Z, Y, rng):
        self.preimage_mean_ = Y.mean(axis=0).astype(np.float32)
        Yc = Y - Y.mean(axis=0)
        sqz = _sq_dists(Z, Z)
        median = np.median(sqz[np.triu_indices(len(Z), 1)]) if len(Z) > 1 else 1.0
        median = median if median > 0 else 1.0
        gammas = [float(self.inverse_gamma)] if self.inverse_gamma is not None else [f / median for f in _GAMMA_FACTORS]
        alphas = [float(self.alpha)] if self.alpha is not None else list(_ALPHAS)
        if len(gammas) * len(alphas) == 1:
            self.preimage_loo_mse_, self.inverse_gamma_, self.alpha_ = np.nan, gammas[0], alphas[0]
        else:
            self.preimage_loo_mse_, self.inverse_gamma_, self.alpha_ = _loo_search(sqz, Yc, gammas, alphas, rng)
        K = np.exp(-self.inverse_gamma_ * sqz)
        K[np.diag_indices_from(K)] += self.alpha_
        self.dual_coef_ = np.ascontiguousarray(np.linalg.solve(K, Yc), dtype=np.float32)
        self.preimage_points_ = Z.astype(np.float32)

    # ------------------------------------------------------------------ applying
    def _transform_block(self, X):
        return (self._features(X) - self.feature_mean_) @ self.components_.T

    def _inverse_block(self, Z):
        # distances in float64 (cheap: k columns); the (rows x genes) product in float32
        sq = _sq_dists(np.asarray(Z, dtype=np.float64), self.preimage_points_.astype(np.float64))
        return np.exp(-float(self.inverse_gamma_) * sq).astype(np.float32) @ self.dual_coef_ + self.preimage_mean_

    # ------------------------------------------------------------------ persistence
    _ARRAYS = {
        "landmarks": ("landmark", "gene"),
        "center": ("gene",),
        "normalization": ("landmark", "nystrom_feature"),
        "feature_mean": ("nystrom_feature",),
        "components": ("component", "nystrom_feature"),
        "eigenvalues": ("component",),
        "preimage_points": ("preimage", "component"),
        "dual_coef": ("preimage", "gene"),
        "preimage_mean": ("gene",),
    }
    _SCALARS = ("gamma", "inverse_gamma", "alpha", "preimage_loo_mse")

    def _param_arrays(self):
        out = {name: (dims, getattr(self, name + "_")) for name, dims in self._ARRAYS.items()}
        out.update({name: ((), np.float64(getattr(self, name + "_"))) for name in self._SCALARS})
        return out

    def _set_param_arrays(self, ds):
        for name in self._ARRAYS:
            setattr(self, name + "_", ds[name].values)
        for name in self._SCALARS:
            setattr(self, name + "_", float(ds[name].values))


def _loo_search(sqz, Yc, gammas, alphas, rng) -> tuple[float, float, float]:
    """(LOO mean squared error, gamma, alpha) of the best kernel ridge on a subsample.

    Exact leave-one-out residuals of kernel ridge regression, ``(y_i - f(x_i)) / (1 - H_ii)``
    with ``H = K (K + alpha I)^-1``, for every alpha from one eigen-decomposition of ``K`` per
    gamma; on at most ``_LOO_ROWS`` rows and ``_LOO_GENES`` genes, to keep it cheap.
    """
    rows = np.sort(rng.choice(len(sqz), size=min(_LOO_ROWS, len(sqz)), replace=False))
    genes = rng.choice(Yc.shape[1], size=min(_LOO_GENES, Yc.shape[1]), replace=False)
    sq, Y = sqz[np.ix_(rows, rows)], Yc[np.ix_(rows, genes)]
    best = (np.inf, gammas[0], alphas[0])
    for g in gammas:
        lam, U = np.linalg.eigh(np.exp(-g * sq))
        lam = np.clip(lam, 0, None)
        P = U.T @ Y
        for a in alphas:
            shrink = lam / (lam + a)
            resid = Y - U @ (shrink[:, None] * P)
            h = np.clip((U**2) @ shrink, None, 1 - 1e-9)
            loo = float(np.mean((resid / (1 - h)[:, None]) ** 2))
            if loo < best[0]:
                best = (loo, g, a)
    return tuple(float(v) for v in best)


def _sq_dists(A, B) -> np.ndarray:
    """Squared Euclidean distances between the rows of A and B (clipped at 0)."""
    sq = (A * A).sum(axis=1)[:, None] + (B * B).sum(axis=1)[None, :] - 2 * (A @ B.T)
    return np.clip(sq, 0, None)


def _resolve_gamma(gamma, sq, n_features) -> float:
    if gamma is None:
        return 1.0 / n_features
    if gamma == "median":  # any other value is refused by fit (_bounds)
        off = sq[np.triu_indices(len(sq), 1)]
        med = float(np.median(off)) if off.size else 0.0
        return 1.0 / med if med > 0 else 1.0 / n_features
    return float(gamma)
