"""Interactive views for the report: a slice viewer per brain map, a hoverable embedding scatter.

* :func:`write_viewer` writes nilearn's brainsprite viewer (``nilearn.plotting.view_img``) of a
  voxel map as a standalone HTML page: its scripts and images are inlined, so it opens offline
  from the file system. Click to move the cursor; the page shows the MNI coordinates and value.
* :func:`embedding_scatter_svg` draws a 2-D embedding as an inline SVG whose points show the
  voxel's MNI coordinates when hovered (the browser's own tooltip: no scripts). Large stores
  are shown through a seeded sample of voxels, and the caption says how many.
"""

from __future__ import annotations

import html
import re
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from .._atomic import write_text
from .._location import user_path
from ..exceptions import InputError
from ..nifti import to_nifti

__all__ = ["write_viewer", "embedding_scatter_svg", "MAX_SCATTER_POINTS"]

#: voxels drawn per scatter; an SVG of 1.9 million points (1 mm) would not open
MAX_SCATTER_POINTS = 3000
# nilearn's page links a favicon on GitHub: the one request it would make to the network
_FAVICON = re.compile(r"<link rel=\"icon\"[^>]*/>", re.S)


def write_viewer(
    da: xr.DataArray,
    path,
    *,
    title: str,
    symmetric: bool | None = None,
    cmap: str | None = None,
) -> Path:
    """Write an interactive slice viewer of a voxel map over the MNI152 template.

    Parameters
    ----------
    da : xarray.DataArray
        A map ``(voxel,)`` with the store's voxel coordinates (``i, j, k`` and the grid attrs),
        e.g. ``ds.expression.sel(gene="APOE")`` or one component of an embedding.
    path : str or Path
        The ``.html`` file to write.
    title : str
        Shown above the slices.
    symmetric : bool, optional
        A colour scale symmetric about 0 (default: when the map has both signs).
    cmap : str, optional
        Matplotlib colour map (default: ``cold_hot`` when symmetric, else ``viridis``).

    Returns
    -------
    Path of the page. Voxels outside the brain, and exact zeros, are transparent.
    """
    from nilearn import plotting

    values = np.asarray(da.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise InputError(f"{title}: the map has no finite value to show")
    if symmetric is None:
        symmetric = bool(finite.min() < 0 < finite.max())
    cmap = cmap or ("cold_hot" if symmetric else "viridis")
    img = to_nifti(da.fillna(0.0) if np.isnan(values).any() else da)
    vmax = float(np.abs(finite).max()) if symmetric else float(finite.max())
    with warnings.catch_warnings():  # nilearn's masked-array and resampling notices
        warnings.simplefilter("ignore")
        view = plotting.view_img(
            img,
            title=title,
            symmetric_cmap=symmetric,
            cmap=cmap,
            vmax=vmax or 1.0,
            vmin=None if symmetric else float(finite.min()),
            resampling_interpolation="nearest",
            colorbar=True,
            black_bg=False,
        )
    page = _FAVICON.sub("", view.get_standalone())
    path = user_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, page)


def embedding_scatter_svg(
    emb: xr.DataArray,
    *,
    title: str,
    max_points: int = MAX_SCATTER_POINTS,
    random_state: int = 0,
    size: int = 360,
) -> tuple[str, int]:
    """An inline SVG scatter of a 2-D embedding, points coloured by MNI y (posterior -> anterior).

    Hovering a point shows its voxel's MNI coordinates and embedding values.

    Parameters
    ----------
    emb : xarray.DataArray
        ``(voxel, component)`` with coordinates ``x, y, z``; the first two components are drawn.
    title : str
        The SVG's accessible title.
    max_points : int
        At most this many voxels, a seeded random sample when there are more.
    random_state : int
        Seed of the sample.
    size : int
        Width and height in CSS pixels.

    Returns
    -------
    (svg, n_drawn)
    """
    from matplotlib import colormaps

    xy = np.asarray(emb.isel(component=slice(0, 2)).values, dtype=np.float64)
    mni = np.column_stack([np.asarray(emb[c].values, dtype=np.float64) for c in ("x", "y", "z")])
    keep = np.flatnonzero(np.isfinite(xy).all(axis=1))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(random_state).choice(keep, max_points, replace=False))
    xy, mni = xy[keep], mni[keep]
    pad = 12
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    px = pad + (xy - lo) / span * (size - 2 * pad)
    px[:, 1] = size - px[:, 1]  # SVG's y grows downwards
    y_lo, y_hi = mni[:, 1].min(), mni[:, 1].max()
    shade = (mni[:, 1] - y_lo) / (y_hi - y_lo if y_hi > y_lo else 1.0)
    rgba = colormaps["viridis"](shade)
    points = []
    for (cx, cy), (x, y, z), (a, b), (r, g, bl, _) in zip(px, mni, xy, rgba, strict=True):
        colour = f"#{int(r * 255):02x}{int(g * 255):02x}{int(bl * 255):02x}"
        points.append(
            f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='2.2' fill='{colour}'>"
            f"<title>MNI x={x:g} y={y:g} z={z:g} mm; embedding ({a:.3g}, {b:.3g})</title></circle>"
        )
    svg = (
        f"<svg class='scatter' xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size}' "
        f"viewBox='0 0 {size} {size}' role='img'><title>{html.escape(title)}</title>"
        f"<rect width='{size}' height='{size}' fill='white' stroke='#ccc'/>" + "".join(points) + "</svg>"
    )
    return svg, len(keep)
