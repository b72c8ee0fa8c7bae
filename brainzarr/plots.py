"""Figures.

:func:`plot_map` draws any voxel-indexed map (a gene, an embedding component, an error map) on
the MNI152 template with nilearn. It works without a display: when no interactive matplotlib
backend can start, matplotlib falls back to Agg, and with ``path`` the figure is written and
closed.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import xarray as xr

from ._atomic import write_file
from .nifti import _other_dim, to_nifti

__all__ = ["plot_map"]


def _title(da: xr.DataArray) -> str:
    scalars = [f"{k}={v.values.item()}" for k, v in da.coords.items() if v.ndim == 0]
    return " ".join([str(da.name)] * (da.name is not None) + scalars) or None


def plot_map(
    da: xr.DataArray,
    path=None,
    title: str | None = None,
    cmap=None,
    display_mode: str = "ortho",
    *,
    grid=None,
    dpi: int = 150,
    **kwargs,
):
    """Plot a voxel-indexed map on the MNI152 template (``nilearn.plotting.plot_stat_map``).

    Parameters
    ----------
    da : xarray.DataArray
        Dims ``(voxel,)``: a map from a store (or pass ``grid=``). Select one entry of any other
        dim first, e.g. ``emb.sel(component=0)``.
    path : str or Path, optional
        Save the figure here (PNG, or any format matplotlib knows from the suffix) and close it.
    title : str, optional
        By default the DataArray's name and scalar coordinates (e.g. ``expression gene=APOE``).
    cmap : matplotlib colormap, optional
        By default "RdBu_r" with a symmetric colour bar for maps with both signs (embeddings,
        residuals), "viridis" from the smallest value for non-negative maps (expression).
    display_mode : str
        nilearn's display mode: "ortho", "x", "y", "z", "mosaic", "tiled", ...
    grid : Grid, optional
        For DataArrays without grid information (see :func:`brainzarr.nifti.to_nifti`).
    dpi : int
        Resolution of the saved figure.
    **kwargs
        Passed to ``plot_stat_map`` (``cut_coords``, ``vmin``, ``vmax``, ``threshold``, ``bg_img``,
        ``black_bg``, ...).

    Returns
    -------
    The nilearn display when ``path`` is None, else the path written.
    """
    import matplotlib.pyplot as plt
    from nilearn import plotting

    other = _other_dim(da)
    if other is not None:
        raise ValueError(f"plot_map draws one map: select one entry of {other!r} first, e.g. da.isel({other}=0)")
    img = to_nifti(da, grid, background=np.nan)
    values = np.asarray(img.dataobj)
    shown = np.isfinite(values)  # the map's voxels; everything else stays transparent
    finite = values[shown]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo < 0 < hi:
        opts = {"cmap": cmap or "RdBu_r", "symmetric_cbar": True}
    else:
        opts = {"cmap": cmap or "viridis", "symmetric_cbar": False, "vmin": lo, "vmax": hi}
    # a threshold would hide true zeros (expression scaled to [0, 1] has them): voxels outside
    # the map are made transparent through a per-voxel alpha image instead
    opts.update(
        threshold=None,
        black_bg=False,
        draw_cross=False,
        transparency=nib.Nifti1Image(shown.astype(np.float32), img.affine),
        transparency_range=[0.5, 1.0],
    )
    opts.update(kwargs)
    img = nib.Nifti1Image(np.where(shown, values, 0).astype(np.float32), img.affine, img.header)
    figure = plt.figure(figsize=(10, 3.6) if display_mode == "ortho" else None)
    display = plotting.plot_stat_map(
        img, display_mode=display_mode, figure=figure, title=title if title is not None else _title(da), **opts
    )
    if path is None:
        return display
    path = write_file(path, lambda tmp: display.savefig(str(tmp), dpi=dpi))
    display.close()
    plt.close(figure)
    return path
