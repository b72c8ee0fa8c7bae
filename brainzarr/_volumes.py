"""Reading a volume file (NIfTI, MGH) with nibabel, and saying plainly what else a file is."""

from __future__ import annotations

import nibabel as nib

from ._location import user_path
from .exceptions import DataNotFoundError, InputError

__all__ = ["load_volume", "checked_volume"]

#: what nibabel's non-volume images hold, as a user knows them
_NOT_VOLUMES = {"GiftiImage": "a surface map (GIFTI)", "Cifti2Image": "a CIFTI grayordinate map"}


def load_volume(path) -> nib.spatialimages.SpatialImage:
    """The image in the volume file ``path``.

    Raises
    ------
    DataNotFoundError
        No file at ``path``.
    InputError
        nibabel cannot read it.
    InputError
        It is not a volume (a GIFTI surface map, a CIFTI file): brainzarr reads volumes in MNI
        space, and such a map must be projected into one first.
    """
    path = user_path(path)
    if not path.exists():
        raise DataNotFoundError(f"no image file at {path}")
    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise InputError(f"{path} could not be read as an image ({type(exc).__name__}: {exc})") from None
    return checked_volume(img, str(path))


def checked_volume(img, name: str = "the image"):
    """``img`` if it is a volume; else :class:`~brainzarr.exceptions.InputError` saying what it is."""
    if not isinstance(img, nib.spatialimages.SpatialImage):
        kind = _NOT_VOLUMES.get(type(img).__name__, f"a {type(img).__name__}")
        raise InputError(
            f"{name} is {kind}, not a volume: brainzarr reads images in MNI volume space (NIfTI); "
            "project the map into the volume first"
        )
    return img
