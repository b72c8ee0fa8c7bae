"""A self-contained HTML report of a store's evaluation: tables and figures in one folder.

``write_report(store, out_dir)`` writes ``out_dir/index.html`` and ``out_dir/figures/*.png``
(and, when targets are given, runs :func:`~brainzarr.evaluate.run_evaluation` into the same
folder first). The page opens in any browser from the file system, with no network: its
interactive slice viewers (``out_dir/viewers/*.html``, nilearn's brainsprite, scripts inlined)
are embedded as frames, and the embedding scatters show a voxel's MNI coordinates on hover.
Every prediction number is shown under the random split and under the blocked split, side by
side, and the page says which is which.
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._atomic import refuse_foreign_outputs, write_text
from .._location import location, user_path
from .._text import text_head
from .._version import __version__
from ..models.store_fitting import selected_methods
from ..sources.table import resolve_genes
from ..store import check_schema, open_store, refuse_output_in_a_store
from . import figures
from .reconstruction import reconstruction_frame, reconstruction_histogram, reconstruction_table
from .results import check_fitted, find_representations, read_embedding, split_labels
from .run import evaluation_record, is_evaluation_folder, load_evaluation, run_evaluation, summary_table
from .stats import anova_tukey
from .synthetic_targets import DESCRIPTIONS
from .targets import load_embedding
from .viewers import embedding_scatter_svg, write_viewer

__all__ = ["write_report", "SPLIT_EXPLANATION"]

SPLIT_EXPLANATION = {
    "random": (
        "the reference study's split: a seeded random 20 % of the voxels is the test set. Neighbouring "
        "voxels are interpolated from the same tissue samples and are near-copies of each other, so "
        "almost every test voxel has a near-duplicate in training; numbers under this split are "
        "optimistic and are shown to compare with the paper."
    ),
    "blocked": (
        "the honest split: whole cubes of {block_mm:g} mm (on a grid anchored at MNI 0) are held out "
        "together until 20 % of the voxels are test{buffer}, and the cross-validation folds inside "
        "the training voxels are whole cubes too. Numbers under this split measure how well a "
        "representation generalises to brain regions it has not seen."
    ),
}

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1180px;
color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}body>figure img{max-width:900px}
.split{padding:.6em 1em;margin:.5em 0;border-left:6px solid}
.random{border-color:#d95f02;background:#fdf0e6}.blocked{border-color:#1b9e77;background:#e8f6f1}
.note{color:#555;font-size:.92em}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}
.grid figure{margin:0}.viewer iframe{border:1px solid #ccc;max-width:100%}table.kv td,table.kv th{text-align:left}
figcaption{font-size:.88em;color:#444}code{background:#f4f4f4;padding:0 .2em}
"""


def _table(frame: pd.DataFrame, floatfmt="{:.4f}", classes=None) -> str:
    if frame is None or len(frame) == 0:
        return "<p class='note'>(none)</p>"
    return frame.to_html(
        index=False, border=0, na_rep="-", float_format=lambda v: floatfmt.format(v), escape=True, classes=classes
    )


def _figure(path: Path, out_dir: Path, caption: str) -> str:
    rel = path.relative_to(out_dir).as_posix()
    return (
        f"<figure><img src='{html.escape(rel)}' alt='{html.escape(caption)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _safe(name: str) -> str:
    """A file name from a label: ``"nmf-k2 (random split)"`` -> ``"nmf-k2_random_split"``."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", str(name)).strip("_")


def _split_section(ds, attrs, block_mm, fitted, out_dir, fig_dir) -> str:
    from ..plots import plot_map

    parts, maps = ["<h2>Train/test splits</h2>"], []
    for scheme in ("random", "blocked"):
        labels = split_labels(ds, scheme)
        shown = xr.DataArray(
            labels, dims="voxel", coords={c: ds[c] for c in ("voxel", "i", "j", "k") if c in ds.coords}
        )
        path = plot_map(shown.rename(f"{scheme} split"), fig_dir / f"split_{scheme}.png", dpi=100)
        maps.append(_figure(path, out_dir, f"The {scheme} split's voxels on the brain."))
        n_test, n_train = int((labels == "test").sum()), int((labels == "train").sum())
        n_buffer = len(labels) - n_test - n_train
        split_prov = attrs.get("provenance", {}).get("split", {})
        buffer_mm = float(split_prov.get("buffer_mm") or 0.0)
        buffer_text = (
            f"; voxels within {buffer_mm:g} mm of a test voxel are in neither set (a buffer, so no "
            "training voxel is a near-copy of a test voxel across a cube face)"
            if n_buffer
            else "; there is no buffer between test and training cubes"
        )
        text = SPLIT_EXPLANATION[scheme].format(block_mm=block_mm, buffer=buffer_text)
        buffered = f", {n_buffer:,} in the buffer" if n_buffer else ""
        parts.append(
            f"<div class='split {scheme}'><b>{scheme} split</b>: {html.escape(text)} "
            f"<br>{n_train:,} training and {n_test:,} test voxels{buffered} "
            f"(seed {attrs.get('provenance', {}).get('split', {}).get('seed', '?')}).</div>"
        )
    parts.append("<div class='grid'>" + "".join(maps) + "</div>")
    if fitted:
        listing = ", ".join(f"{html.escape(k)}: <b>{html.escape(str(v))}</b>" for k, v in sorted(fitted.items()))
        parts.append(
            "<p class='note'>Each representation was fitted on the training voxels of one split "
            f"({listing}). Its embedding of the other split's test voxels comes from a model that "
            "saw their expression (never the targets) during fitting: an unsupervised, milder leak "
            "than the random split's.</p>"
        )
    return "\n".join(parts)


def _recon_section(store, frame, reps, out_dir, fig_dir, ds, error_maps: dict) -> str:
    """The reconstruction tables and figures; fills ``error_maps`` with each method's per-voxel RMSE."""
    parts = ["<h2>Reconstruction</h2>"]
    if frame.empty:
        return parts[0] + "<p class='note'>No fitted representation with a reconstruction in the store.</p>"
    parts.append(
        "<p>Root mean squared error between the expression (scaled to [0, 1]) and its reconstruction "
        "from the embedding, on the training and on the held-out test voxels of the split each model "
        "was fitted under. t-SNE and UMAP have no inverse of their own, so each is read two ways, "
        "labelled in the table: <b>kNN: neighbourhood</b> is the error of averaging the 10 training voxels "
        "nearest in the embedding, which says how well the embedding keeps each voxel next to the ones it "
        "resembles (and hardly changes with the dimension); <b>MLP: compression</b> is the error of a "
        "network that reconstructs from the k coordinates alone, which says how much k numbers carry, "
        "the reading comparable with the other methods' rows.</p>"
    )
    wide = frame.pivot_table(index=["method", "dim"], columns="split", values=["train_rmse", "test_rmse"])
    order = [(m, s) for s in ("random", "blocked", "unknown") for m in ("train_rmse", "test_rmse") if (m, s) in wide]
    wide = wide[order]
    wide.columns = [f"{scheme} split: {metric.replace('_rmse', '')} RMSE" for metric, scheme in wide.columns]
    parts.append(_table(wide.reset_index()))
    figs = [
        _figure(
            figures.plot_rmse_vs_dim(frame, fig_dir / "rmse_vs_dim.png"),
            out_dir,
            "Reconstruction RMSE against embedding dimension (solid: test voxels, dashed: training).",
        )
    ]
    hists = {}
    for method in sorted(frame["method"].unique()):
        candidates = [r for r in reps if r.method == method and "reconstruction" in r.variables]
        if not candidates:
            continue
        rep = min(candidates, key=lambda r: r.dim)
        subset = split_labels(ds, rep.split_scheme) == "test" if rep.split_scheme else None
        label = f"{rep.name} ({rep.split_scheme or '?'} split)"
        counts, edges, error_maps[label] = reconstruction_histogram(
            store, rep.group, subset=subset, ds=ds, return_voxel_rmse=True
        )
        hists[label] = (counts, edges)
    if hists:
        figs.append(
            _figure(
                figures.plot_reconstruction_hist(hists, fig_dir / "reconstruction_hist.png"),
                out_dir,
                "Original against reconstructed expression of every gene at the test voxels "
                "(lowest dim of each method); the dashed line is a perfect reconstruction.",
            )
        )
    parts.append("<div class='grid'>" + "".join(figs) + "</div>")
    return "\n".join(parts)


def _embedding_section(embeddings, out_dir, fig_dir) -> str:
    parts = ["<h2>2-D embeddings</h2>"]
    if not embeddings:
        return parts[0] + "<p class='note'>No 2-D embedding in the store.</p>"
    parts.append(
        _figure(
            figures.plot_embedding_density(embeddings, fig_dir / "embedding_density.png"),
            out_dir,
            "Density of the voxels in each 2-D embedding (smoothed 2-D histogram, contours at 10, 30, "
            "50, 70 and 90 % of the peak).",
        )
    )
    brains = []
    for name, emb in embeddings.items():
        maps = {f"{name} component {int(c)}": emb.sel(component=c) for c in emb["component"].values[:2]}
        path = figures.plot_brain_maps(maps, fig_dir / f"brain_{_safe(name)}.png")
        brains.append(_figure(path, out_dir, f"{name}: first two components on the brain (orthogonal slices)."))
    parts.append("<h3>Brain projections</h3><div class='grid'>" + "".join(brains) + "</div>")
    return "\n".join(parts)


def _viewer_frame(path: Path, out_dir: Path, caption: str) -> str:
    rel = path.relative_to(out_dir).as_posix()
    return (
        f"<figure class='viewer'><iframe src='{html.escape(rel)}' title='{html.escape(caption)}' "
        f"width='640' height='330'></iframe><figcaption>{html.escape(caption)} "
        f"<a href='{html.escape(rel)}'>open alone</a></figcaption></figure>"
    )


def _interactive_section(embeddings, gene_map, error_maps, out_dir) -> str:
    """Slice viewers of every map (embedding components, a gene, reconstruction error) and
    hoverable scatters of the 2-D embeddings."""
    parts = [
        "<h2>Interactive views</h2>",
        "<p class='note'>Click a slice viewer to move its cursor (it shows the MNI coordinates and "
        "the value there); hover a point of a scatter for its voxel's MNI coordinates. Points are "
        "coloured by MNI y, from posterior (dark) to anterior (yellow).</p>",
    ]
    view_dir = out_dir / "viewers"
    for name, emb in embeddings.items():
        svg, n_drawn = embedding_scatter_svg(emb, title=f"{name}: 2-D embedding")
        n_total = int(np.isfinite(emb.values).all(axis=1).sum())
        sample = (
            f"all {n_drawn:,} voxels" if n_drawn == n_total else f"{n_drawn:,} of {n_total:,} voxels (seeded sample)"
        )
        cells = [f"<figure class='viewer'>{svg}<figcaption>{html.escape(name)}: {sample}.</figcaption></figure>"]
        for c in emb["component"].values[:2]:
            path = write_viewer(
                emb.sel(component=c), view_dir / f"{_safe(name)}_c{int(c)}.html", title=f"{name} component {int(c)}"
            )
            cells.append(_viewer_frame(path, out_dir, f"{name}, component {int(c)}"))
        parts.append(f"<h3>{html.escape(name)}</h3><div class='grid'>" + "".join(cells) + "</div>")
    cells = []
    if gene_map is not None:
        gene = str(gene_map["gene"].values)
        path = write_viewer(gene_map, view_dir / f"gene_{_safe(gene)}.html", title=f"{gene} expression")
        cells.append(_viewer_frame(path, out_dir, f"{gene} expression (scaled to [0, 1])"))
    for label, err in error_maps.items():
        path = write_viewer(err, view_dir / f"error_{_safe(label)}.html", title=f"{label} RMSE", cmap="magma")
        cells.append(_viewer_frame(path, out_dir, f"{label}: reconstruction RMSE of each voxel over the genes"))
    if cells:
        parts.append("<h3>Expression and reconstruction error</h3><div class='grid'>" + "".join(cells) + "</div>")
    return "\n".join(parts)


def _r2_cells(prediction: pd.DataFrame) -> pd.DataFrame:
    """target x representation table of 'R² random / R² blocked' strings."""
    wide = prediction.pivot_table(index="target", columns=["representation", "split"], values="r2")
    out = pd.DataFrame(index=wide.index)
    for rep in dict.fromkeys(wide.columns.get_level_values(0)):
        cells = []
        for target in wide.index:
            vals = [wide.get((rep, s), pd.Series(dtype=float)).get(target, np.nan) for s in ("random", "blocked")]
            cells.append(" / ".join("-" if np.isnan(v) else f"{v:.3f}" for v in vals))
        out[rep] = cells
    return out.reset_index()


def _prediction_section(prediction, target_maps, embeddings, out_dir, fig_dir) -> str:
    parts = ["<h2>Downstream prediction of target maps</h2>"]
    if prediction is None or prediction.empty:
        return parts[0] + (
            "<p class='note'>No target maps were evaluated. Run <code>brainzarr evaluate STORE "
            "--targets DIR -o OUT</code> or <code>brainzarr report STORE --targets DIR</code>.</p>"
        )
    schemes = [s for s in ("random", "blocked") if s in set(prediction["split"])]
    parts.append(
        "<p>For each representation and target map, an XGBoost regressor predicts the target from the "
        "embedding; its hyper-parameters are grid-searched by 5-fold cross-validation on the training "
        "voxels and it is scored on the test voxels. Targets are min-max scaled to [0, 1]; voxels "
        "where a target is missing (zero/NaN background) are left out. Splits reported: "
        + ", ".join(f"<b>{s}</b>" for s in schemes)
        + ".</p>"
    )
    summary = summary_table(prediction)
    parts.append("<h3>Mean over targets</h3>" + _table(summary, "{:.3f}"))
    parts.append(
        _figure(
            figures.plot_r2_bars(prediction, fig_dir / "r2_bars.png"),
            out_dir,
            "Test R² by representation: bars are the mean over targets, points the targets; "
            "orange: random split, green: blocked split.",
        )
    )
    parts.append("<h3>Test R² per target (random / blocked)</h3>" + _table(_r2_cells(prediction)))
    anova, tukey = anova_tukey(prediction)
    parts.append(
        "<h3>Statistics across representations</h3><p>One-way ANOVA and Tukey's HSD on the per-target "
        "test R² (scipy), for each split.</p>" + _table(anova, "{:.4g}") + _table(tukey, "{:.4g}")
    )
    if target_maps is not None:
        names = [str(t) for t in target_maps["target"].values]
        counts = pd.DataFrame(
            {
                "target": names,
                "valid voxels": target_maps["n_valid"].values,
                "excluded voxels": target_maps["n_excluded"].values,
                "source": [Path(str(s)).name for s in target_maps["source"].values],
            }
        )
        if any(n in DESCRIPTIONS for n in names):
            counts["what"] = [DESCRIPTIONS.get(n, "") for n in names]
        parts.append("<h3>Targets</h3>" + _table(counts, classes="kv"))
        tfigs = []
        for start in range(0, len(names), 6):
            chunk = names[start : start + 6]
            maps = {n: target_maps.sel(target=n) for n in chunk}
            path = figures.plot_brain_maps(maps, fig_dir / f"targets_{start // 6 + 1}.png", symmetric=False)
            tfigs.append(
                _figure(path, out_dir, "Target maps on the store's grid (scaled to [0, 1]): " + ", ".join(chunk))
            )
        parts.append("".join(tfigs))
        if embeddings:
            efigs = []
            for name in names:
                path = figures.plot_embedding_by_target(
                    embeddings, target_maps.sel(target=name), fig_dir / f"embedding_by_{_safe(name)}.png", name=name
                )
                efigs.append(_figure(path, out_dir, f"2-D embeddings coloured by {name}."))
            parts.append("<h3>Embeddings coloured by each target</h3><div class='grid'>" + "".join(efigs) + "</div>")
    return "\n".join(parts)


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a report that brainzarr wrote (by its title)."""
    return "<title>brainzarr report:" in text_head(path, 4096)


def write_report(
    store,
    out_dir,
    targets=None,
    *,
    methods=None,
    dims=(2,),
    split: str = "both",
    embeddings: dict | None = None,
    gene: str | None = None,
    progress: bool | None = None,
    **evaluate_options,
) -> Path:
    """Write an HTML report of a store's representations and their evaluation.

    Parameters
    ----------
    store : str or Path
        The store.
    out_dir : str or Path
        The report folder: ``index.html``, ``figures/`` and ``viewers/``.
    targets : directory, files or DataArray, optional
        Evaluate these target maps first (:func:`~brainzarr.evaluate.run_evaluation`, outputs in
        ``out_dir``). Without targets the report shows the evaluation last saved in the store
        (by ``brainzarr evaluate``), if any.
    methods : str or list of str, optional
        Representations shown (default: all); a method named that the store holds no fit of is
        refused.
    dims : tuple of int
        Embedding dims evaluated for prediction when ``targets`` are given.
    split : {"random", "blocked", "both"}
        Split schemes evaluated when ``targets`` are given.
    embeddings : dict, optional
        External embeddings (see :func:`~brainzarr.evaluate.run_evaluation`).
    gene : str, optional
        The gene shown in an interactive viewer (default: the store's first gene).
    progress : bool, optional
        Progress bars (default: :func:`brainzarr.set_options`'s, on a terminal).
    **evaluate_options
        Passed to :func:`~brainzarr.evaluate.run_evaluation` (grid, random_state, n_jobs, ...).

    Returns
    -------
    Path of ``index.html``.
    """
    start = time.perf_counter()
    store, out_dir = location(store), user_path(out_dir)
    refuse_output_in_a_store(out_dir)
    refuse_foreign_outputs(out_dir, ["index.html"], ours=_is_report(out_dir / "index.html"), job="the report")
    attrs = check_schema(store)
    ds = open_store(store)
    methods = selected_methods(methods)
    reps = find_representations(store, methods=methods, require=None)
    check_fitted(store, methods, reps)
    # a gene the store lacks is named with the nearest it holds ("apoe": APOE), before any work
    gene = str(ds["gene"].values[0]) if gene is None else resolve_genes([str(gene)], ds["gene"].values)[0]
    record = {}
    if targets is not None:  # refuses what it cannot use before it writes
        result = run_evaluation(
            store,
            targets,
            out_dir,
            methods=methods,
            dims=dims,
            split=split,
            embeddings=embeddings,
            progress=progress,
            **evaluate_options,
        )
        prediction, target_maps = result.prediction, result.target_maps
    else:
        prediction, target_maps = load_evaluation(store)
        evaluated_here = is_evaluation_folder(out_dir) and (out_dir / "prediction.csv").exists()
        if prediction.empty and evaluated_here:  # evaluated with --no-store
            prediction = pd.read_csv(out_dir / "prediction.csv")
        if methods is not None and len(prediction):
            prediction = prediction[prediction["method"].isin(methods)]
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    record = evaluation_record(out_dir) or record

    frame = reconstruction_frame(reconstruction_table(store, methods=methods))
    embeddings_2d = {
        r.name: read_embedding(store, r.group, ds) for r in reps if r.dim == 2 and "embedding" in r.variables
    }
    for name, files in (embeddings or {}).items():
        emb = load_embedding(files, ds, name=name)
        if emb.sizes["component"] >= 2:
            embeddings_2d[name] = emb.isel(component=slice(0, 2))
    fitted = {r.name: r.split_scheme or "unknown" for r in reps}
    block_mm = float(record.get("block_mm") or attrs.get("provenance", {}).get("split", {}).get("block_mm", 16.0))

    prov = attrs.get("provenance", {})
    src = prov.get("source", {})
    overview = pd.DataFrame(
        [
            ("store", str(store)),
            ("grid", f"{attrs['grid_shape']} at {attrs['resolution_mm']:g} mm, {attrs.get('space')}"),
            ("expression", f"{ds.sizes['voxel']:,} voxels x {ds.sizes['gene']:,} genes"),
            ("source", f"{src.get('name')} (seed {src.get('options', {}).get('seed', prov.get('seed'))})"),
            ("representations", ", ".join(r.name for r in reps) or "none"),
            (
                "evaluation",
                ", ".join(f"{k}={v}" for k, v in record.items() if k in ("seed", "n_splits", "block_mm", "grid"))
                or "-",
            ),
        ],
        columns=["", "value"],
    )
    error_maps = {}
    body = [
        f"<h1>brainzarr report: {html.escape(store.name)}</h1>",
        _table(overview, classes="kv"),
        _split_section(ds, attrs, block_mm, fitted, out_dir, fig_dir),
        _recon_section(store, frame, reps, out_dir, fig_dir, ds, error_maps),
        _embedding_section(embeddings_2d, out_dir, fig_dir),
        _interactive_section(embeddings_2d, ds["expression"].sel(gene=gene).compute(), error_maps, out_dir),
        _prediction_section(prediction, target_maps, embeddings_2d, out_dir, fig_dir),
        (
            f"<p class='note'>brainzarr {html.escape(str(__version__))}; report written in "
            f"{time.perf_counter() - start:.0f} s.</p>"
        ),
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>brainzarr report: {html.escape(store.name)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    return write_text(out_dir / "index.html", page)
