"""Figures.

:func:`plot_map` draws any voxel-indexed map (a gene, an embedding component, an error map) on
the MNI152 template with nilearn, and :func:`plot_surface` on the cortical surface (fsaverage5,
which nilearn ships: nothing to download). They work without a display: when no interactive
matplotlib backend can start, matplotlib falls back to Agg, and with ``path`` the figure is
written and closed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import nibabel as nib
import numpy as np
import xarray as xr

from ._atomic import write_file
from .exceptions import InputError
from .nifti import _other_dim, is_labels, to_nifti
from .store import refuse_output_in_a_store

__all__ = ["LABEL_COLOURS", "label_colours", "plot_map", "plot_surface"]

#: the colours a label always has, in figures, the report and the lookup tables that ``brainzarr
#: export`` writes: the splits' train blue, test red, and the buffer (in neither set) grey
LABEL_COLOURS = {"train": "#1f77b4", "test": "#d62728", "buffer": "#bdbdbd"}


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
        dim first, e.g. ``emb.sel(component=0)``. Labels (``ds.split``, ``ds.hemisphere``) are
        drawn as regions of distinct colours (``nilearn.plotting.plot_roi``) with a legend (up
        to 30 labels; more are counted, not named).
    path : str or Path, optional
        Save the figure here (PNG, or any format matplotlib knows from the suffix) and close it.
    title : str, optional
        By default the DataArray's name and scalar coordinates (e.g. ``expression gene=APOE``).
    cmap : matplotlib colormap, optional
        By default "RdBu_r" with a symmetric colour bar for maps with both signs (embeddings,
        residuals), "viridis" from the smallest value for non-negative maps (expression). For
        labels, ``{label: colour}`` or a qualitative colormap; by default the splits' own colours
        (:data:`LABEL_COLOURS`) and "tab10" for other labels (see :func:`label_colours`).
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

    if path is not None:
        refuse_output_in_a_store(path)
    if is_labels(da):
        display, figure = _plot_labels(da, grid, title, cmap, display_mode, kwargs)
        return _saved(display, figure, path, dpi)
    img, shown, opts = _one_map(da, grid, cmap, "plot_map")
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
    figure = plt.figure(figsize=(10, 3.6) if display_mode == "ortho" else None)
    display = plotting.plot_stat_map(
        img, display_mode=display_mode, figure=figure, title=title if title is not None else _title(da), **opts
    )
    return _saved(display, figure, path, dpi)


def _saved(display, figure, path, dpi):
    """The display, or with ``path`` the path it was saved to (the figure closed)."""
    import matplotlib.pyplot as plt

    if path is None:
        return display
    path = write_file(path, lambda tmp: display.savefig(str(tmp), dpi=dpi))
    display.close()
    plt.close(figure)
    return path


#: the most labels a label map's legend names (six columns of five rows under the slices)
MAX_LEGEND_LABELS = 30


def _plot_labels(da: xr.DataArray, grid, title, cmap, display_mode, kwargs):
    """A map of labels (``ds.split``, ``ds.hemisphere``) as regions of distinct colours over the
    template (``nilearn.plotting.plot_roi``), named in a legend."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from nilearn import plotting

    from .nifti import _read_meta

    if _other_dim(da) is not None:
        raise InputError(f"plot_map draws one map: select one entry of {_other_dim(da)!r} first")
    img = to_nifti(da, grid)  # codes 1..n, the table in its header
    table = {int(code): name for code, name in _read_meta(img)["labels"].items()}
    colours = label_colours([table[code] for code in sorted(table)], cmap)
    figure = plt.figure(figsize=(10, 3.6) if display_mode == "ortho" else None)
    opts = {"black_bg": False, "draw_cross": False, "colorbar": False, "alpha": 0.8} | kwargs
    display = plotting.plot_roi(
        img,
        display_mode=display_mode,
        figure=figure,
        title=title if title is not None else _title(da),
        cmap=ListedColormap(colours),
        vmin=0.5,
        vmax=len(table) + 0.5,
        **opts,
    )
    if len(table) > MAX_LEGEND_LABELS:  # an atlas of hundreds of regions: a legend would cover the brain
        figure.text(0.99, 0.01, f"{len(table):,} labels (too many to name here)", ha="right", fontsize=8)
        return display, figure
    handles = [Patch(facecolor=colour, label=table[code]) for code, colour in zip(sorted(table), colours)]
    figure.legend(handles=handles, loc="lower right", ncols=min(len(handles), 6), frameon=False, fontsize=8)
    return display, figure


def label_colours(names, cmap=None) -> list[tuple[float, float, float, float]]:
    """One RGBA colour per label, in the order given.

    Parameters
    ----------
    names : sequence of str
        The labels, e.g. ``["test", "train"]``.
    cmap : None, str or dict label -> colour
        ``{label: colour}`` first (any matplotlib colour), then :data:`LABEL_COLOURS`, then a
        qualitative palette ("tab10", "tab20" beyond 10 labels) in turn, skipping the colours
        taken, and beyond its 20 colours distinct hues a golden-ratio step apart (no colour
        twice); a colormap's name colours every label from that colormap in turn.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    named = {**LABEL_COLOURS, **cmap} if isinstance(cmap, Mapping) else LABEL_COLOURS if cmap is None else {}
    palette = plt.get_cmap(("tab10" if len(names) <= 10 else "tab20") if cmap is None or named else cmap)
    taken = {to_rgba(named[name]) for name in names if name in named}
    spread = np.arange(palette.N) if palette.N <= 20 else np.linspace(0, 1, len(names))  # "viridis": evenly
    free = [c for c in map(to_rgba, palette(spread)) if c not in taken] or [palette(0)]
    n_unnamed = sum(name not in named for name in names)
    if palette.N <= 20 and n_unnamed > len(free):  # an atlas of hundreds: no colour twice, none near its neighbour's
        free += [c for c in _golden_colours(n_unnamed) if c not in taken and c not in free][: n_unnamed - len(free)]
    unnamed = iter(range(len(names)))  # the others take the palette's colours in turn, skipping those taken
    return [to_rgba(named[name]) if name in named else free[next(unnamed) % len(free)] for name in names]


def _golden_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours, hues a golden-ratio step apart (consecutive ones far apart on the
    colour wheel), in three shades of saturation and brightness."""
    from matplotlib.colors import hsv_to_rgb

    i = np.arange(n)
    shades = np.array([[0.75, 0.9], [0.55, 0.7], [0.9, 0.55]])[i % 3]
    hsv = np.column_stack([(0.11 + i * 0.6180339887) % 1.0, shades])
    return [(*map(float, rgb), 1.0) for rgb in hsv_to_rgb(hsv)]


def _one_map(da: xr.DataArray, grid, cmap, caller: str) -> tuple[nib.Nifti1Image, np.ndarray, dict]:
    """The map as an image (0 outside its voxels), where its voxels are, and its colours;
    refusing an array of several maps."""
    other = _other_dim(da)
    if other is not None:
        raise InputError(f"{caller} draws one map: select one entry of {other!r} first, e.g. da.isel({other}=0)")
    img = to_nifti(da, grid, background=np.nan)
    values = np.asarray(img.dataobj)
    shown = np.isfinite(values)
    img = nib.Nifti1Image(np.where(shown, values, 0).astype(np.float32), img.affine, img.header)
    return img, shown, _colours(values[shown], cmap)


def _colours(values: np.ndarray, cmap) -> dict:
    """Diverging and symmetric for a map of both signs (embeddings, residuals), else viridis
    from the smallest value to the largest (expression)."""
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if lo < 0 < hi:
        return {"cmap": cmap or "RdBu_r", "symmetric_cbar": True}
    return {"cmap": cmap or "viridis", "symmetric_cbar": False, "vmin": lo, "vmax": hi}


def plot_surface(
    da: xr.DataArray,
    path=None,
    title: str | None = None,
    cmap=None,
    *,
    grid=None,
    views=("lateral", "medial"),
    hemispheres=("left", "right"),
    inflate: bool = False,
    dpi: int = 150,
    **kwargs,
):
    """Plot a voxel-indexed map on the cortical surface (``nilearn.plotting.plot_img_on_surf``).

    The map is sampled onto fsaverage5 (which nilearn ships) from its own voxels only: a vertex
    with no voxel of the map near it is left grey, as a coarse store (8 mm) leaves some.

    Parameters
    ----------
    da : xarray.DataArray
        Dims ``(voxel,)``: a map from a store or a region table (on its atlas), or pass
        ``grid=``. Select one entry of any other dim first.
    path : str or Path, optional
        Save the figure here and close it.
    title : str, optional
        By default the DataArray's name and scalar coordinates.
    cmap : matplotlib colormap, optional
        As :func:`plot_map`: "RdBu_r", symmetric, for maps of both signs, else "viridis".
    grid : Grid, optional
        For DataArrays without grid information.
    views, hemispheres : sequence of str
        nilearn's: "lateral", "medial", "dorsal", "ventral", "anterior", "posterior"; "left",
        "right".
    inflate : bool
        Draw the inflated surface.
    dpi : int
        Resolution of the saved figure.
    **kwargs
        Passed to ``plot_img_on_surf`` (``vmin``, ``vmax``, ``threshold``, ``bg_on_data``...).

    Returns
    -------
    The matplotlib figure when ``path`` is None, else the path written.
    """
    import matplotlib.pyplot as plt
    from nilearn import plotting

    if path is not None:
        refuse_output_in_a_store(path)
    if is_labels(da):
        raise InputError(f"plot_surface draws values; {da.name or 'these'} are labels: draw them with plot_map")
    img, shown, opts = _one_map(da, grid, cmap, "plot_surface")
    opts.update(threshold=None, cbar_tick_format="%.2g")
    opts.update(kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # vertices far from the map
        figure, _ = plotting.plot_img_on_surf(
            img,
            mask_img=nib.Nifti1Image(shown.astype(np.int8), img.affine),
            views=list(views),
            hemispheres=list(hemispheres),
            inflate=inflate,
            title=title if title is not None else _title(da),
            **opts,
        )
    if path is None:
        return figure
    path = write_file(path, lambda tmp: figure.savefig(str(tmp), dpi=dpi))
    plt.close(figure)
    return path
