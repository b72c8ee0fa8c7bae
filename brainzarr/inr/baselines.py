"""Baseline interpolators of a sample table, with the same ``fit(table)`` / ``predict(xyz, genes)``.

* :class:`NearestInterpolator` and :class:`IDWInterpolator` use the build's own weights
  (:class:`brainzarr.assign.Assignment`): 'nearest' is the mean of the samples inside the same
  voxel of ``affine`` (1 mm MNI voxels by default) else the nearest sample; 'idw' is abagen's
  ``get_interpolated_map``, inverse-distance weights over the k = 10 nearest samples.
* :class:`KrigingInterpolator`: Gaussian-process regression (simple kriging of each gene's
  standardised values around its mean) with *one* stationary kernel shared by every gene. Its
  length scale and noise ratio maximise the marginal likelihood summed over genes, which needs
  only the samples' Gram matrix ``Z Z^T / G``; one Cholesky factorisation then serves all genes.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.optimize import minimize_scalar
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._deprecation import renamed_kwargs
from ..assign import Assignment
from ..exceptions import InputError
from ..sources.table import validate_sample_table
from .genes import gene_positions
from .inputs import as_points

__all__ = ["NearestInterpolator", "IDWInterpolator", "KrigingInterpolator", "KERNELS", "make_baseline"]

KERNELS = ("exponential", "matern32", "matern52", "rbf")


class _TableInterpolator(BaseEstimator):
    def _read_table(self, table):
        validate_sample_table(table)
        values = np.asarray(table["expression"].values, dtype=np.float32)
        if not np.isfinite(values).all():
            raise InputError(f"{type(self).__name__} needs a complete table (no NaN values)")
        self.genes_ = table["gene"].values.astype(str)
        self.xyz_ = np.column_stack([table[c].values for c in "xyz"]).astype(float)
        return values

    def gene_index(self, genes=None) -> np.ndarray:
        check_is_fitted(self, "genes_")
        return gene_positions(self.genes_, genes)


class _WeightedInterpolator(_TableInterpolator):
    method = ""

    def _assignment(self):
        raise NotImplementedError

    def fit(self, table) -> _WeightedInterpolator:
        self.values_ = self._read_table(table)
        self.assignment_ = self._assignment()
        return self

    def predict(self, xyz, genes=None) -> np.ndarray:
        """(n, g) float32: the weighted mean of sample values at MNI points ((n, 3) or one point)."""
        idx = self.gene_index(genes)
        weights = self.assignment_.weights(as_points(xyz))
        return np.asarray(weights @ self.values_[:, idx], dtype=np.float32)


class NearestInterpolator(_WeightedInterpolator):
    """Mean of the samples in the same voxel of ``affine`` (default: 1 mm MNI voxels), else the nearest."""

    def __init__(self, affine=None):
        self.affine = affine

    def _assignment(self):
        affine = np.eye(4) if self.affine is None else np.asarray(self.affine, dtype=float)
        return Assignment("nearest", self.xyz_, affine=affine)


class IDWInterpolator(_WeightedInterpolator):
    """abagen's interpolation: inverse-distance weighted mean of the ``n_neighbors`` nearest samples."""

    @renamed_kwargs(k="n_neighbors")
    def __init__(self, n_neighbors: int = 10):
        self.n_neighbors = n_neighbors

    def _assignment(self):
        return Assignment("idw", self.xyz_, n_neighbors=int(self.n_neighbors))


def kernel_matrix(dist: np.ndarray, length_scale: float, kind: str) -> np.ndarray:
    """Unit-variance stationary kernel of distances (mm)."""
    r = np.asarray(dist, dtype=np.float64) / float(length_scale)
    if kind == "exponential":
        return np.exp(-r)
    if kind == "matern32":
        a = np.sqrt(3.0) * r
        return (1.0 + a) * np.exp(-a)
    if kind == "matern52":
        a = np.sqrt(5.0) * r
        return (1.0 + a + a * a / 3.0) * np.exp(-a)
    if kind == "rbf":
        return np.exp(-0.5 * r * r)
    raise InputError(f"unknown kernel {kind!r}; choose from {', '.join(KERNELS)}")


class KrigingInterpolator(_TableInterpolator):
    """Gaussian-process (simple kriging) interpolation with one kernel shared by all genes.

    Each gene is standardised; its values are modelled as ``s_g^2 (k(x, x') + noise * I)``
    around its mean, with the kernel ``k`` (length scale ``length_scale_mm``) and the noise
    ratio common to all genes. The predictive mean ``k(x*, X) (K + noise I)^-1 z_g`` does not
    depend on ``s_g``, so one factorisation of ``K + noise I`` serves every gene.

    Parameters
    ----------
    kernel : {'exponential', 'matern32', 'matern52', 'rbf'}
    length_scale_mm, noise : float, optional
        Fixed hyperparameters; by default both maximise the marginal likelihood summed over
        genes, computed on at most ``max_fit_samples`` samples (a seeded subset).
    max_fit_samples : int
        Size of that subset (the likelihood costs its cube).
    random_state : int
        Draws that subset.

    Attributes
    ----------
    length_scale_mm_, noise_ : float
    alpha_ : (n_samples, n_genes) float32
        ``(K + noise I)^-1 z`` for every gene.
    """

    @renamed_kwargs(seed="random_state")
    def __init__(
        self,
        kernel: str = "matern32",
        length_scale_mm: float | None = None,
        noise: float | None = None,
        max_fit_samples: int = 1500,
        random_state: int = 0,
    ):
        self.kernel = kernel
        self.length_scale_mm = length_scale_mm
        self.noise = noise
        self.max_fit_samples = max_fit_samples
        self.random_state = random_state

    def fit(self, table) -> KrigingInterpolator:
        if self.kernel not in KERNELS:
            raise InputError(f"unknown kernel {self.kernel!r}; choose from {', '.join(KERNELS)}")
        values = self._read_table(table)
        self.mean_ = values.mean(axis=0)
        scale = values.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)
        z = (values - self.mean_) / self.scale_
        self.length_scale_mm_, self.noise_ = self._hyperparameters(z)
        gram = kernel_matrix(cdist(self.xyz_, self.xyz_), self.length_scale_mm_, self.kernel)
        gram[np.diag_indices_from(gram)] += self.noise_
        factor = sla.cho_factor(gram, lower=True, overwrite_a=True)
        self.alpha_ = np.empty_like(z, dtype=np.float32)
        for a in range(0, z.shape[1], 4096):
            self.alpha_[:, a : a + 4096] = sla.cho_solve(factor, z[:, a : a + 4096].astype(np.float64))
        return self

    def _hyperparameters(self, z):
        if self.length_scale_mm is not None and self.noise is not None:
            return float(self.length_scale_mm), float(self.noise)
        n = len(z)
        rows = np.arange(n)
        if n > self.max_fit_samples:
            rows = np.sort(np.random.default_rng(self.random_state).choice(n, int(self.max_fit_samples), replace=False))
        zs = z[rows].astype(np.float64)
        cov = zs @ zs.T / z.shape[1]
        dist = cdist(self.xyz_[rows], self.xyz_[rows])
        m = len(rows)

        def profile(length):
            lam, vec = np.linalg.eigh(kernel_matrix(dist, length, self.kernel))
            lam = np.clip(lam, 0.0, None)
            q = np.einsum("ij,ij->j", vec, cov @ vec)

            def nll(log_noise):  # per gene, with the signal variance profiled out
                d = lam + np.exp(log_noise)
                return m * np.log(np.sum(q / d) / m) + np.sum(np.log(d))

            if self.noise is not None:
                return nll(np.log(self.noise)), float(self.noise)
            res = minimize_scalar(nll, bounds=(np.log(1e-4), np.log(1e2)), method="bounded", options={"xatol": 1e-3})
            return float(res.fun), float(np.exp(res.x))

        if self.length_scale_mm is not None:
            return float(self.length_scale_mm), profile(float(self.length_scale_mm))[1]
        res = minimize_scalar(
            lambda t: profile(np.exp(t))[0],
            bounds=(np.log(2.0), np.log(300.0)),
            method="bounded",
            options={"xatol": 0.02},
        )
        length = float(np.exp(res.x))
        return length, profile(length)[1]

    def predict(self, xyz, genes=None, *, block_rows: int = 4096) -> np.ndarray:
        """(n, g) float32 kriging mean at MNI points ((n, 3) or one point)."""
        idx = self.gene_index(genes)
        xyz = as_points(xyz)
        out = np.empty((len(xyz), len(idx)), dtype=np.float32)
        alpha = self.alpha_[:, idx]
        for a in range(0, len(xyz), block_rows):
            k = kernel_matrix(cdist(xyz[a : a + block_rows], self.xyz_), self.length_scale_mm_, self.kernel)
            out[a : a + block_rows] = k.astype(np.float32) @ alpha
        return out * self.scale_[idx] + self.mean_[idx]


@renamed_kwargs(seed="random_state")
def make_baseline(name: str, *, random_state: int = 0, **params):
    """'nearest', 'idw' or 'kriging' with their parameters."""
    if name == "nearest":
        return NearestInterpolator(**params)
    if name == "idw":
        return IDWInterpolator(**params)
    if name == "kriging":
        return KrigingInterpolator(random_state=random_state, **params)
    raise InputError(f"unknown baseline {name!r}; choose from nearest, idw, kriging")
