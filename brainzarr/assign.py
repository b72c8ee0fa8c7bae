"""Samples -> voxels: each voxel's value is a weighted mean of sample rows.

An assignment turns a block of voxels into a sparse weight matrix ``W`` (voxels x samples,
rows summing to 1); the block's expression is ``W @ samples``. Weights are computed per
block from a KD-tree of the sample coordinates, so no voxel-sized table is ever held.

Methods
-------
``nearest``
    The reference study's: the mean of the samples that fall inside the voxel, otherwise
    the nearest sample.
``idw``
    abagen's ``get_interpolated_map``: inverse-distance weighted mean of the ``n_neighbors`` nearest
    samples (``n_neighbors`` = 10); a voxel exactly on a sample takes that sample.
``atlas``
    For region tables: each voxel takes the row of its atlas region (``labels``).

``nearest`` and ``idw`` may be restricted to the voxel's hemisphere: left voxels use left
samples only, right voxels right ones, midline voxels every sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ._validation import did_you_mean, whole_number
from .exceptions import InputError
from .grid import xyz_to_ijk

__all__ = ["Assignment", "ASSIGNMENT_METHODS", "check_assignment"]

ASSIGNMENT_METHODS = ("nearest", "idw", "atlas")


def check_assignment(method: str | None, n_neighbors: int = 10) -> None:
    """Refuse an unknown assignment method (None: a block source of the caller's, not checked
    here) or a number of neighbours that is not a whole number of at least 1."""
    if method == "inr":  # the command line's --assignment inr: a model renders the store instead
        raise InputError(
            "assignment 'inr' is a store rendered by an implicit neural representation: "
            "brainzarr.inr.render.build_inr_store(path, source=..., model=...) builds it"
        )
    if method is not None and method not in ASSIGNMENT_METHODS:
        raise InputError(
            f"unknown assignment {method!r}; choose from {', '.join(ASSIGNMENT_METHODS)}"
            f"{did_you_mean(method, ASSIGNMENT_METHODS)}"
        )
    if whole_number(n_neighbors, "n_neighbors") < 1:
        raise InputError(f"n_neighbors must be at least 1, got {n_neighbors}")


@dataclass
class Assignment:
    """How voxels take values from sample (or region) rows.

    Parameters
    ----------
    method : {'nearest', 'idw', 'atlas'}
    sample_xyz : (n, 3) array
        MNI coordinates of the samples (for 'atlas': ignored, may be None).
    sample_hemisphere : (n,) array of 'L'/'R'/'M', optional
        Needed when ``same_hemisphere``.
    n_neighbors : int
        Neighbours for 'idw'.
    same_hemisphere : bool
        Restrict to the voxel's hemisphere.
    affine : (4, 4) array
        The grid's affine ('nearest' finds the samples inside each voxel with it).
    region_labels : (n,) int array
        For 'atlas': the atlas label of each row.
    """

    method: str
    sample_xyz: np.ndarray | None = None
    sample_hemisphere: np.ndarray | None = None
    n_neighbors: int = 10
    same_hemisphere: bool = False
    affine: np.ndarray | None = None
    region_labels: np.ndarray | None = None

    def __post_init__(self):
        check_assignment(self.method, self.n_neighbors)
        if self.method == "atlas":
            if self.region_labels is None:
                raise InputError("assignment 'atlas' needs region_labels")
            self.n_rows = len(self.region_labels)
            return
        self.sample_xyz = np.asarray(self.sample_xyz, dtype=float)
        self.n_rows = len(self.sample_xyz)
        if self.method == "nearest" and self.affine is None:
            raise InputError("assignment 'nearest' needs the grid's affine")
        if self.same_hemisphere and self.sample_hemisphere is None:
            raise InputError("same_hemisphere needs the samples' hemispheres")
        hemi = np.asarray(self.sample_hemisphere).astype(str) if self.same_hemisphere else None
        self._pools = {}
        for side in ("L", "R", "M"):
            rows = np.arange(self.n_rows) if hemi is None or side == "M" else np.flatnonzero(hemi == side)
            if len(rows) == 0:
                rows = np.arange(self.n_rows)  # a hemisphere with no samples falls back to all
            self._pools[side] = (rows, cKDTree(self.sample_xyz[rows]))

    def provenance(self) -> dict:
        out = {"method": self.method}
        if self.method == "idw":
            out["n_neighbors"] = int(self.n_neighbors)
        if self.method != "atlas":
            out["same_hemisphere"] = bool(self.same_hemisphere)
        return out

    # the block protocol of brainzarr.build: prepare(block) once per block of voxels, then
    # compute(state, values, gene_slice) per slice of genes
    def prepare(self, block: dict) -> sp.csr_matrix:
        return self.weights(block["xyz"], block["hemisphere"], block["labels"])

    @staticmethod
    def compute(weights: sp.csr_matrix, values: np.ndarray, gene_slice: slice) -> np.ndarray:
        return np.asarray(weights @ values[:, gene_slice], dtype=np.float32)

    def weights(self, voxel_xyz, voxel_hemisphere=None, voxel_labels=None) -> sp.csr_matrix:
        """Sparse (n_voxels, n_rows) float32 weights, rows summing to 1."""
        if self.method == "atlas":
            return self._atlas_weights(np.asarray(voxel_labels))
        voxel_xyz = np.asarray(voxel_xyz, dtype=float)
        if self.same_hemisphere:
            sides = np.asarray(voxel_hemisphere).astype(str)
        else:
            sides = np.full(len(voxel_xyz), "M")
        blocks = []
        for side, (rows, tree) in self._pools.items():
            vox = np.flatnonzero(sides == side)
            if len(vox) == 0:
                continue
            fn = self._idw if self.method == "idw" else self._nearest
            r, c, w = fn(voxel_xyz[vox], rows, tree)
            blocks.append((vox[r], c, w))
        r, c, w = (np.concatenate(parts) for parts in zip(*blocks))
        return sp.csr_matrix((w.astype(np.float32), (r, c)), shape=(len(voxel_xyz), self.n_rows))

    def _idw(self, xyz, rows, tree):
        k = min(self.n_neighbors, len(rows))
        dist, idx = tree.query(xyz, k=k)
        dist, idx = dist.reshape(len(xyz), k), idx.reshape(len(xyz), k)
        exact = dist <= 1e-6
        with np.errstate(divide="ignore"):
            w = np.where(exact.any(axis=1, keepdims=True), exact.astype(float), 1.0 / dist)
        w /= w.sum(axis=1, keepdims=True)
        keep = w > 0
        r = np.repeat(np.arange(len(xyz)), k).reshape(len(xyz), k)
        return r[keep], rows[idx[keep]], w[keep]

    def _nearest(self, xyz, rows, tree):
        # samples inside each voxel: same rounded grid index
        sample_ijk = xyz_to_ijk(self.sample_xyz[rows], self.affine)
        voxel_ijk = xyz_to_ijk(xyz, self.affine)
        key_s = _ijk_key(sample_ijk)
        key_v = _ijk_key(voxel_ijk)
        order = np.argsort(key_s, kind="stable")
        sorted_keys = key_s[order]
        lo = np.searchsorted(sorted_keys, key_v, side="left")
        hi = np.searchsorted(sorted_keys, key_v, side="right")
        counts = hi - lo
        inside = np.flatnonzero(counts > 0)
        r_in = np.repeat(inside, counts[inside])
        c_in = (
            order[np.concatenate([np.arange(a, b) for a, b in zip(lo[inside], hi[inside])])]
            if len(inside)
            else np.empty(0, dtype=np.int64)
        )
        w_in = 1.0 / np.repeat(counts[inside], counts[inside])
        outside = np.flatnonzero(counts == 0)
        _, nn = tree.query(xyz[outside], k=1)
        r = np.concatenate([r_in, outside])
        c = np.concatenate([c_in, np.asarray(nn, dtype=np.int64).reshape(-1)])
        w = np.concatenate([w_in, np.ones(len(outside))])
        return r, rows[c], w

    def _atlas_weights(self, voxel_labels):
        position = {int(lab): row for row, lab in enumerate(np.asarray(self.region_labels))}
        cols = np.array([position.get(int(lab), -1) for lab in voxel_labels], dtype=np.int64)
        if (cols < 0).any():
            raise InputError("some voxels have an atlas label with no row in the region table")
        n = len(voxel_labels)
        return sp.csr_matrix((np.ones(n, dtype=np.float32), (np.arange(n), cols)), shape=(n, self.n_rows))


def _ijk_key(ijk):
    ijk = np.asarray(ijk, dtype=np.int64) + 1024  # make room for negative indices
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]
