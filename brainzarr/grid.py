"""Voxel grids: a brain mask on a regular grid in MNI space.

A :class:`Grid` is a boolean 3-D mask plus its 4x4 affine. Its voxels, the rows of every
brainzarr store, are the mask's non-zero entries in C order (``numpy.nonzero``), so a
contiguous block of voxels is a slab of the brain: spatially compact, which keeps row
batches of the store local.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ._location import user_path
from ._validation import Bound, checked, whole_number
from ._volumes import checked_volume, load_volume
from .exceptions import DataNotFoundError, InputError

__all__ = ["Grid", "mni152_grid", "grid_from_mask", "ijk_to_xyz", "xyz_to_ijk"]

MNI152_SPACE = "MNI152NLin2009cAsym"


def ijk_to_xyz(ijk, affine) -> np.ndarray:
    """Grid indices (n, 3) -> MNI millimetres (n, 3) through ``affine``."""
    ijk = np.asarray(ijk, dtype=float)
    affine = np.asarray(affine, dtype=float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def xyz_to_ijk(xyz, affine, *, rounded: bool = True) -> np.ndarray:
    """MNI millimetres (n, 3) -> grid indices (n, 3); rounded to the nearest voxel by default."""
    xyz = np.asarray(xyz, dtype=float)
    inv = np.linalg.inv(np.asarray(affine, dtype=float))
    ijk = xyz @ inv[:3, :3].T + inv[:3, 3]
    return np.rint(ijk).astype(np.int64) if rounded else ijk


@dataclass(frozen=True, eq=False)
class Grid:
    """A brain mask on a regular grid.

    Parameters
    ----------
    mask : (I, J, K) bool array
        Voxels that belong to the brain.
    affine : (4, 4) array
        Voxel indices -> millimetres in ``space``.
    space : str
        Name of the template space.
    name : str
        Where the mask came from (for provenance).
    """

    mask: np.ndarray
    affine: np.ndarray
    space: str = MNI152_SPACE
    name: str = "custom"
    _ijk: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        mask = np.asarray(self.mask).astype(bool)
        affine = np.asarray(self.affine, dtype=float)
        if mask.ndim != 3:
            raise InputError(f"a grid mask must be 3-D, got shape {mask.shape}")
        if affine.shape != (4, 4):
            raise InputError(f"an affine must be 4x4, got shape {affine.shape}")
        if not mask.any():
            raise InputError("the mask has no voxels")
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "_ijk", np.stack(np.nonzero(mask), axis=1).astype(np.int32))

    def __repr__(self) -> str:  # the dataclass's printed the whole mask
        return (
            f"Grid(name={self.name!r}, shape={self.shape}, resolution_mm={self.resolution_mm:g}, "
            f"n_voxels={self.n_voxels}, space={self.space!r})"
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.mask.shape)

    @property
    def n_voxels(self) -> int:
        return len(self._ijk)

    @property
    def resolution_mm(self) -> float:
        """Edge length of a voxel (the mean of the three axes' spacing)."""
        return float(np.mean(np.linalg.norm(self.affine[:3, :3], axis=0)))

    @property
    def ijk(self) -> np.ndarray:
        """(n_voxels, 3) grid indices of the voxels, in store order."""
        return self._ijk

    @property
    def xyz(self) -> np.ndarray:
        """(n_voxels, 3) MNI coordinates (mm) of the voxel centres, in store order."""
        return ijk_to_xyz(self._ijk, self.affine)

    @property
    def hemisphere(self) -> np.ndarray:
        """'L' (x < 0), 'R' (x > 0) or 'M' (on the midline, x == 0) for every voxel."""
        x = self.xyz[:, 0]
        return np.where(np.isclose(x, 0.0), "M", np.where(x < 0, "L", "R"))

    def flat_index(self) -> np.ndarray:
        """Raveled (C order) index of every voxel in the full 3-D volume."""
        return np.ravel_multi_index(tuple(self._ijk.T), self.shape)

    def voxel_of(self, xyz) -> np.ndarray:
        """Store row of the voxel holding each MNI point, or -1 outside the mask."""
        ijk = xyz_to_ijk(xyz, self.affine)
        inside = np.all((ijk >= 0) & (ijk < np.array(self.shape)), axis=1)
        lookup = np.full(self.shape, -1, dtype=np.int64)
        lookup[tuple(self._ijk.T)] = np.arange(self.n_voxels)
        out = np.full(len(ijk), -1, dtype=np.int64)
        out[inside] = lookup[tuple(ijk[inside].T)]
        return out

    def to_nifti(self) -> nib.Nifti1Image:
        """The mask as a uint8 NIfTI image."""
        return nib.Nifti1Image(self.mask.astype(np.uint8), self.affine)

    def to_attrs(self) -> dict:
        """JSON-able description stored in a store's attributes."""
        return {
            "affine": self.affine.tolist(),
            "grid_shape": list(self.shape),
            "resolution_mm": self.resolution_mm,
            "space": self.space,
            "mask": self.name,
        }

    @classmethod
    def from_ijk(cls, ijk, shape, affine, *, space=MNI152_SPACE, name="custom") -> Grid:
        """Rebuild a grid from its voxels' indices (as stored); checks their order."""
        mask = np.zeros(tuple(int(s) for s in shape), dtype=bool)
        ijk = np.asarray(ijk, dtype=np.int64)
        mask[tuple(ijk.T)] = True
        grid = cls(mask, affine, space=space, name=name)
        if len(ijk) != grid.n_voxels or not np.array_equal(grid.ijk, ijk):
            raise InputError("voxel indices are not unique and in C order")
        return grid


def mni152_grid(resolution: int = 4, *, threshold: float = 0.2) -> Grid:
    """The MNI152 brain mask that nilearn ships, at ``resolution`` mm: the voxels whose brain
    probability in the template is above ``threshold`` (in [0, 1), nilearn's default 0.2).

    Voxel counts: 3,666 at 8 mm, 29,398 at 4 mm, 235,375 at 2 mm, 1,882,989 at 1 mm.
    """
    from nilearn.datasets import load_mni152_brain_mask

    # int() read "2mm" as Python's `invalid literal for int()`, None as a TypeError and True as 1 mm
    wrong = InputError(f"resolution must be a positive integer number of mm, got {resolution!r}")
    try:
        resolution = whole_number(resolution, "resolution")
    except InputError:
        raise wrong from None
    if resolution < 1:
        raise wrong
    # of the template's brain probability: -1 made the whole box the brain, "0.2" stopped in numpy
    checked(threshold, "threshold", Bound(0, 1, high_open=True))
    img = load_mni152_brain_mask(resolution=resolution, threshold=threshold)
    return Grid(np.asarray(img.dataobj) > 0, img.affine, name=f"nilearn MNI152 brain mask {resolution}mm")


def grid_from_mask(mask, *, space: str = MNI152_SPACE) -> Grid:
    """A grid from a user's mask NIfTI (path or image): every non-zero voxel is in the brain."""
    name = str(mask) if isinstance(mask, (str, Path)) else "user mask"
    if isinstance(mask, (str, Path)) and not user_path(mask).exists():
        raise DataNotFoundError(f"mask file not found: {mask}")
    img = load_volume(mask) if isinstance(mask, (str, Path)) else checked_volume(mask, name)
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"a mask must be a 3-D image, {name} has shape {data.shape}")
    inside = np.nan_to_num(data) != 0
    _warn_unless_a_mask(data[inside], name)
    return Grid(inside, img.affine, space=space, name=name)


#: more distinct non-zero values than a label image (an atlas) holds: an intensity image
_MOST_LABELS = 1000


def _warn_unless_a_mask(values: np.ndarray, name: str) -> None:
    """Warn when a mask's non-zero values are those of a probability map or an intensity image
    (a T1 template given for its brain mask), whose every non-zero voxel, skull and scalp
    included, would be taken as brain."""
    fractional = values.dtype.kind == "f" and not np.array_equal(values, np.round(values))
    distinct = np.unique(values).size
    if fractional or distinct > _MOST_LABELS:
        what = "fractional values" if fractional else f"{distinct:,} distinct values"
        warnings.warn(
            f"{name} holds {what}, as a probability map or an image does, not a binary mask or "
            f"labels: all {values.size:,} of its non-zero voxels are taken as brain; threshold it first "
            "(e.g. nilearn.image.binarize_img(img, threshold=0.5)) unless that is meant",
            stacklevel=3,
        )
