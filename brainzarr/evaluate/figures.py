"""Figures of the evaluation (PNG; matplotlib, and nilearn for brains).

Headless-safe without choosing matplotlib's backend: where no display is available matplotlib
falls back to Agg itself, and setting it here switched a notebook's backend on import.

Every function writes one PNG and returns its path:

* :func:`plot_embedding_density` - 2-D density of each method's 2-D embedding;
* :func:`plot_brain_maps` - orthogonal slices of voxel maps (embedding components, targets);
* :func:`plot_reconstruction_hist` - original vs reconstructed values (2-D histogram);
* :func:`plot_rmse_vs_dim` - reconstruction RMSE against embedding dimension;
* :func:`plot_embedding_by_target` - 2-D embeddings coloured by a target map;
* :func:`plot_r2_bars` - mean test R² by representation, random vs blocked split, with the
  per-target points.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from .._atomic import write_file
from .._location import user_path
from ..exceptions import InputError

__all__ = [
    "plot_embedding_density",
    "plot_brain_maps",
    "plot_reconstruction_hist",
    "plot_rmse_vs_dim",
    "plot_embedding_by_target",
    "plot_r2_bars",
    "SPLIT_COLOURS",
]

#: colours of the split schemes, the same in every figure
SPLIT_COLOURS = {"random": "#d95f02", "blocked": "#1b9e77"}
_DPI = 110


def _panels(n: int, ncols: int = 3, size=(3.6, 3.2)):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, layout="constrained"
    )
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


def _save(fig, path) -> Path:
    path = user_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, lambda tmp: fig.savefig(tmp, dpi=_DPI, bbox_inches="tight"))
    plt.close(fig)
    return path


def _xy(emb) -> np.ndarray:
    arr = np.asarray(getattr(emb, "values", emb), dtype=float)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InputError(f"a 2-D embedding needs at least two components, got shape {arr.shape}")
    return arr[:, :2]


def plot_embedding_density(embeddings: dict, path, *, bins: int = 120, smooth: float = 2.5) -> Path:
    """One panel per representation: the density of voxels in its first two components.

    The density is a 2-D histogram smoothed with a Gaussian of ``smooth`` bins (a kernel density
    estimate on a grid, cheap at any number of voxels), normalised to its peak, with contours.
    """
    from scipy.ndimage import gaussian_filter

    fig, axes = _panels(len(embeddings))
    for ax, (name, emb) in zip(axes, embeddings.items()):
        xy = _xy(emb)
        xy = xy[np.isfinite(xy).all(axis=1)]
        lo, hi = np.percentile(xy, 0.5, axis=0), np.percentile(xy, 99.5, axis=0)
        pad = 0.08 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        counts, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=bins, range=[(lo[0], hi[0]), (lo[1], hi[1])])
        density = gaussian_filter(counts, smooth)
        density /= density.max() or 1.0
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_less(density.T, 0.01), cmap="magma_r", vmin=0, vmax=1)
        ax.contour(
            (xe[:-1] + xe[1:]) / 2,
            (ye[:-1] + ye[1:]) / 2,
            density.T,
            levels=[0.1, 0.3, 0.5, 0.7, 0.9],
            colors="black",
            linewidths=0.5,
            alpha=0.6,
        )
        ax.set_title(f"{name} ({len(xy):,} voxels)")
        ax.set_xlabel("component 1")
        ax.set_ylabel("component 2")
    fig.colorbar(mesh, ax=list(axes), label="density (relative to peak)", shrink=0.8)
    fig.suptitle("Density of voxels in each 2-D embedding")
    return _save(fig, path)


def plot_brain_maps(maps: dict, path, *, title: str | None = None, symmetric: bool | None = None) -> Path:
    """Orthogonal slices (nilearn) of voxel maps, one row per map.

    Parameters
    ----------
    maps : dict label -> (voxel,) DataArray from a store (carrying its grid)
    path : str or Path
        The figure file (PNG).
    title : str, optional
        Above the figure.
    symmetric : bool, optional
        Diverging colours centred on 0 (default: when a map has both signs).
    """
    from nilearn import plotting

    from ..nifti import to_nifti

    fig = plt.figure(figsize=(10, 2.6 * len(maps)))
    for row, (label, da) in enumerate(maps.items()):
        values = np.asarray(da.values, dtype=float)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        diverging = symmetric if symmetric is not None else (lo < 0 < hi)
        # nilearn hides |value| <= threshold: the background (0 outside the brain, NaN where a map
        # is missing) must vanish so the template shows through, but a map's own zeros must not:
        # lift values within the threshold of 0 to just above it (a 1e-3 of the range, invisible)
        eps = 1e-3 * max(hi - lo, 1e-12)
        lifted = np.where(np.abs(values) < eps, np.where(values < 0, -eps, eps), values)
        img = to_nifti(da.copy(data=np.nan_to_num(lifted, nan=0.0)), background=0.0)
        ax = fig.add_axes([0, 1 - (row + 1) / len(maps), 1, 1 / len(maps)])
        opts = (
            {"cmap": "RdBu_r", "symmetric_cbar": True, "vmax": max(abs(lo), abs(hi))}
            if diverging
            else {"cmap": "viridis", "symmetric_cbar": False, "vmin": lo, "vmax": hi}
        )
        display = plotting.plot_stat_map(
            img,
            axes=ax,
            figure=fig,
            display_mode="ortho",
            threshold=eps / 2,
            title=label,
            draw_cross=False,
            black_bg=False,
            annotate=True,
            colorbar=True,
            resampling_interpolation="nearest",
            **opts,
        )
        cbar = getattr(display, "_cbar", None)
        if cbar is not None:  # nilearn adds a tick at the (invisible) threshold: plain ticks instead
            cbar.set_ticks(np.linspace(cbar.norm.vmin, cbar.norm.vmax, 5))
            cbar.ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    if title:
        fig.suptitle(title, y=1.0 + 0.25 / len(maps))
    return _save(fig, path)


def plot_reconstruction_hist(hists: dict, path, *, subset_label: str = "test voxels") -> Path:
    """Original (x) vs reconstructed (y) expression, one panel per representation.

    ``hists``: name -> (counts (bins, bins), edges) from
    :func:`brainzarr.evaluate.reconstruction.reconstruction_histogram`.
    """
    fig, axes = _panels(len(hists))
    for ax, (name, (counts, edges)) in zip(axes, hists.items()):
        masked = np.ma.masked_equal(counts.T, 0)
        mesh = ax.pcolormesh(edges, edges, masked, cmap="viridis", norm=LogNorm(vmin=1, vmax=max(2, counts.max())))
        ax.plot([edges[0], edges[-1]], [edges[0], edges[-1]], color="crimson", lw=0.8, ls="--", label="y = x")
        fig.colorbar(mesh, ax=ax, label="values", shrink=0.85)
        ax.set_aspect("equal")
        ax.set_title(name)
        ax.set_xlabel("original expression")
        ax.set_ylabel("reconstructed")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.suptitle(f"Original vs reconstructed expression ({subset_label})")
    return _save(fig, path)


def plot_rmse_vs_dim(frame: pd.DataFrame, path) -> Path:
    """Test (solid) and train (dashed) RMSE against dim, one line per method, one panel per split
    scheme and resolution. ``frame``: :func:`~brainzarr.evaluate.reconstruction_frame` rows."""
    panels = sorted(frame.groupby(["split", "resolution_mm"]).groups)
    fig, axes = _panels(len(panels), ncols=2, size=(5.0, 3.8))
    colours = dict(zip(sorted(frame["method"].unique()), plt.cm.tab10.colors))
    for ax, (scheme, res) in zip(axes, panels):
        part = frame[(frame["split"] == scheme) & (frame["resolution_mm"] == res)]
        for method, rows in part.groupby("method"):
            rows = rows.sort_values("dim")
            ax.plot(rows["dim"], rows["test_rmse"], "o-", color=colours[method], label=f"{method}")
            ax.plot(rows["dim"], rows["train_rmse"], "o--", color=colours[method], alpha=0.45, ms=3)
        dims = sorted(part["dim"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims)
        ax.set_xticklabels([str(d) for d in dims])
        ax.set_xlabel("embedding dimension")
        ax.set_ylabel("RMSE")
        ax.set_title(f"{scheme} split, {res:g} mm (solid: test, dashed: train)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


def plot_embedding_by_target(embeddings: dict, target, path, *, name: str | None = None) -> Path:
    """The 2-D embeddings, one panel per representation, each voxel coloured by the target map."""
    values = np.asarray(getattr(target, "values", target), dtype=float)
    name = name or str(getattr(target, "name", "target"))
    fig, axes = _panels(len(embeddings), size=(3.4, 3.1))
    finite = values[np.isfinite(values)]
    vmin, vmax = (np.percentile(finite, 1), np.percentile(finite, 99)) if finite.size else (0, 1)
    for ax, (rep, emb) in zip(axes, embeddings.items()):
        xy = _xy(emb)
        ok = np.isfinite(xy).all(axis=1)
        missing = ok & ~np.isfinite(values)
        ax.scatter(xy[missing, 0], xy[missing, 1], s=3, c="#cccccc", lw=0, label="no target value")
        have = ok & np.isfinite(values)
        order = np.argsort(values[have])  # high values on top
        sc = ax.scatter(
            xy[have, 0][order],
            xy[have, 1][order],
            c=values[have][order],
            s=4,
            lw=0,
            cmap="viridis",
            vmin=vmin,
            vmax=vmax,
            rasterized=True,
        )
        ax.set_title(rep)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("component 1")
        ax.set_ylabel("component 2")
    fig.colorbar(sc, ax=list(axes), label=f"{name} (scaled)", shrink=0.8)
    fig.suptitle(f"2-D embeddings coloured by {name}")
    return _save(fig, path)


def plot_r2_bars(prediction: pd.DataFrame, path) -> Path:
    """Mean test R² per representation (bars), random and blocked split side by side, with each
    target's R² as a point."""
    reps = list(dict.fromkeys(prediction.sort_values(["representation"])["representation"]))
    schemes = [s for s in SPLIT_COLOURS if s in set(prediction["split"])]
    width = 0.8 / max(1, len(schemes))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(reps) + 2), 4.6), layout="constrained")
    rng = np.random.default_rng(0)  # jitter of the points only
    for s, scheme in enumerate(schemes):
        part = prediction[prediction["split"] == scheme]
        offset = (s - (len(schemes) - 1) / 2) * width
        means = [part.loc[part["representation"] == r, "r2"].mean() for r in reps]
        x = np.arange(len(reps)) + offset
        ax.bar(x, means, width * 0.92, color=SPLIT_COLOURS[scheme], alpha=0.55, label=f"{scheme} split (mean)")
        for i, rep in enumerate(reps):
            pts = part.loc[part["representation"] == rep, "r2"].to_numpy()
            ax.scatter(
                x[i] + rng.uniform(-width * 0.25, width * 0.25, len(pts)),
                pts,
                s=12,
                color=SPLIT_COLOURS[scheme],
                edgecolor="black",
                linewidth=0.4,
                zorder=3,
            )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(reps)))
    ax.set_xticklabels(reps, rotation=30, ha="right")
    ax.set_ylabel("test R² (points: targets)")
    ax.set_title("Downstream prediction of target maps from the embeddings (XGBoost)")
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(plt.Line2D([], [], ls="", marker="o", ms=4, mfc="white", mec="black", mew=0.4))
    labels.append("one target")
    ax.legend(
        handles, labels, frameon=False, fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=len(labels)
    )
    return _save(fig, path)


def plot_rmse_beside_study(
    rmse: pd.DataFrame, study: dict, computed, path, *, labels: dict | None = None, resolution_mm: float
) -> Path:
    """Test RMSE against dim: the study's values (``study``: method -> {dim: RMSE}) in the first
    panel, then one panel per split scheme of ``rmse`` (:func:`brainzarr.rmse_table` rows),
    ringing the points for which ``computed(method, dim)`` is false (the study could not)."""
    labels = labels or {}
    colours = dict(zip(dict.fromkeys([*study, *rmse["method"]]), plt.cm.tab10.colors))
    schemes = [s for s in ("random", "blocked") if s in set(rmse["split"])]
    fig, axes = plt.subplots(1, 1 + len(schemes), figsize=(5 * (1 + len(schemes)), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    for method, values in study.items():
        d = sorted(values)
        axes[0].plot(d, [values[k] for k in d], "o-", color=colours[method], label=labels.get(method, method))
    axes[0].set_title("the study (read off its figure; 4 mm)", fontsize=10)
    for ax, scheme in zip(axes[1:], schemes):
        part = rmse[rmse["split"] == scheme]
        for (method, reading), rows in part.groupby(["method", "reading"], sort=False):
            rows = rows.sort_values("dim")
            second = reading.startswith("compression")
            label = labels.get(method, method) + (" (MLP decoder)" if second else "")
            ax.plot(rows["dim"], rows["test_rmse"], "s--" if second else "o-", color=colours[method], label=label)
            missing = [d for d in rows["dim"] if not computed(method, d)]
            ax.scatter(
                missing,
                rows.set_index("dim").loc[missing, "test_rmse"],
                s=90,
                facecolors="none",
                edgecolors="black",
                lw=0.8,
            )
        ax.set_title(
            f"this run: {scheme} split, {resolution_mm:g} mm (ringed: the study could not compute)", fontsize=9
        )
    ticks = sorted({*rmse["dim"], *(d for values in study.values() for d in values)})
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(d) for d in ticks])
        ax.set_xlabel("embedding dimension")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    axes[0].set_ylabel("test RMSE")
    fig.tight_layout()
    return _save(fig, path)
