"""What the coordinate network sees at a location: scaled MNI coordinates and tissue.

Coordinates are scaled isotropically (one factor for all axes, so distances keep their
shape) from a fixed MNI box, not from the data, so a fitted model can be evaluated anywhere:
``(xyz - MNI_CENTER) / MNI_HALF_WIDTH`` maps the MNI152 template's field of view
(x -90..90, y -126..90, z -72..108 mm) into [-1, 1].

The optional tissue inputs are nilearn's MNI152 grey- and white-matter masks (1 mm, its
native resolution), read at the voxel holding each point: two 0/1 columns, zero outside the
template, as in Yu et al. (2025).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..exceptions import InputError

__all__ = [
    "MNI_CENTER",
    "MNI_HALF_WIDTH",
    "scale_coordinates",
    "tissue_inputs",
    "location_inputs",
    "n_inputs",
    "as_points",
]

MNI_CENTER = np.array([0.0, -18.0, 18.0])
MNI_HALF_WIDTH = 108.0


def scale_coordinates(xyz) -> np.ndarray:
    """MNI millimetres (n, 3) -> (n, 3) float32, the template's field of view in [-1, 1]."""
    xyz = as_points(xyz)
    return ((xyz - MNI_CENTER) / MNI_HALF_WIDTH).astype(np.float32)


@lru_cache(maxsize=1)
def _tissue_masks():
    from nilearn.datasets import load_mni152_gm_mask, load_mni152_wm_mask

    gm = load_mni152_gm_mask(resolution=1)
    wm = load_mni152_wm_mask(resolution=1)
    stacked = np.stack([np.asarray(gm.dataobj) > 0, np.asarray(wm.dataobj) > 0], axis=-1)
    return stacked, gm.affine


def tissue_inputs(xyz) -> np.ndarray:
    """(n, 2) float32: nilearn's MNI152 grey-matter and white-matter masks at each point."""
    from ..grid import xyz_to_ijk

    xyz = as_points(xyz)
    masks, affine = _tissue_masks()
    ijk = xyz_to_ijk(xyz, affine)
    inside = np.all((ijk >= 0) & (ijk < np.array(masks.shape[:3])), axis=1)
    out = np.zeros((len(xyz), 2), dtype=np.float32)
    out[inside] = masks[tuple(ijk[inside].T)]
    return out


def location_inputs(xyz, tissue: bool = True) -> np.ndarray:
    """The network's input rows: scaled coordinates, then (optionally) the two tissue masks."""
    scaled = scale_coordinates(xyz)
    return np.hstack([scaled, tissue_inputs(xyz)]) if tissue else scaled


def n_inputs(tissue: bool) -> int:
    """Inputs per location: x, y, z, and with ``tissue`` the grey- and white-matter masks there."""
    return 5 if tissue else 3


def as_points(xyz) -> np.ndarray:
    """(n, 3) float64 MNI points from an (n, 3) array or one point (x, y, z); refuses other shapes and NaN."""
    xyz = np.asarray(xyz, dtype=float)
    if xyz.ndim == 1 and xyz.shape == (3,):
        xyz = xyz[None]
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        hint = "; for rows of x, y and z give the transpose, xyz.T" if xyz.ndim == 2 and xyz.shape[0] == 3 else ""
        raise InputError(f"locations must be an (n, 3) array of MNI x, y, z in mm, got shape {xyz.shape}{hint}")
    if not np.isfinite(xyz).all():
        raise InputError("locations must be finite")
    return xyz
