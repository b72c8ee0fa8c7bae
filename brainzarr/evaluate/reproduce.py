"""The reference study's protocol in one call (Ruffle et al., Hum Brain Mapp 2024).

Six methods at dims 2..128 fitted on the training voxels of the random *and* the blocked split,
held-out reconstruction RMSE, 2-D embeddings, XGBoost on every target map, ANOVA and Tukey HSD,
and one page, ``reproduce.html``, that puts this run's figures beside the study's numbers and
marks what the study could not compute (t-SNE has no reconstruction; UMAP's inverse transform
was too costly beyond 2-D, 4-D at 8 mm). brainzarr computes those cells with its decoders; they
are labelled.
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import refuse_foreign_outputs, write_file, write_text
from .._location import location, user_path
from .._validation import SEED, SPLIT_SYNONYMS, did_you_mean, whole_number
from .._version import __version__
from ..exceptions import InputError
from ..store import check_schema, open_store, refuse_output_in_a_store

__all__ = ["reproduce_study", "STUDY_METHODS", "STUDY_DIMS", "STUDY_TEST_RMSE", "study_computed"]

logger = logging.getLogger(__name__)

STUDY_METHODS = ("pca", "kpca", "nmf", "tsne", "umap", "ae")
STUDY_DIMS = (2, 4, 8, 16, 32, 64, 128)
#: the study's test RMSE, read off its figure (approximate; only the values its text or figure
#: make readable): method -> {dim: RMSE}
STUDY_TEST_RMSE = {
    "ae": {2: 0.0194, 4: 0.017, 8: 0.0155, 16: 0.0155, 32: 0.0155, 64: 0.0155, 128: 0.0155},
    "pca": {2: 0.026, 128: 0.0175},
    "kpca": {2: 0.029, 128: 0.027},
    "umap": {2: 0.035},
}
#: the study's mean downstream R² over its 24 targets (auto-encoder; the others are in its figure)
STUDY_MEAN_R2 = {"ae": 0.356}
_LABELS = {"pca": "PCA", "kpca": "kernel PCA", "nmf": "NMF", "tsne": "t-SNE", "umap": "UMAP", "ae": "auto-encoder"}


def study_computed(method: str, dim: int, resolution_mm: float) -> bool:
    """Whether the study reported a reconstruction RMSE for ``method`` at ``dim``."""
    if method == "tsne":
        return False
    if method == "umap":
        return dim == 2 or (dim == 4 and resolution_mm >= 8)
    return True


def check_method_params(method_params, methods, dims) -> dict:
    """``method_params`` checked before any fit: a mapping of method names to parameters that
    the estimator of each one of ``methods`` takes (at the first of ``dims``), never the dims' or
    the seed's own."""
    from ..models import JOB_PARAMS, METHODS
    from ..models.store_fitting import make_model

    method_params = {} if method_params is None else method_params
    if not isinstance(method_params, dict) or not all(isinstance(p, dict) for p in method_params.values()):
        raise InputError(
            "the per-method parameters take {method: {parameter: value}}, e.g. "
            f'{{"ae": {{"max_epochs": 50}}}}, got {method_params!r}'
        )
    other = [m for m in method_params if m not in METHODS]
    if other:
        raise InputError(
            f"parameters given for {', '.join(map(str, other))}, which is not a method "
            f"({', '.join(METHODS)}); they go by method: {{method: {{parameter: value}}}}"
        )
    for method, params in method_params.items():
        if method not in methods:  # one mapping may serve runs of several method subsets
            continue
        own = [name for name in JOB_PARAMS if name in params]
        if own:
            raise InputError(f"{method}'s {' and '.join(own)}: set by the protocol's dims and seed, for every fit")
        make_model(method, dims[0], **params)
    return method_params


def _fit_all(store, methods, dims, splits, random_state, method_params, log):
    from ..exceptions import ResultExistsError
    from ..models.store_fitting import fit_store

    fitted, reused = 0, 0
    for split in splits:
        for method in methods:
            for dim in dims:
                start = time.perf_counter()
                try:
                    result = fit_store(
                        store, method, dim, split=split, random_state=random_state, **method_params.get(method, {})
                    )
                except ResultExistsError:
                    reused += 1
                    continue
                fitted += 1
                test = float(result["rmse"].sel(split="test"))
                log(f"  {split:>7} {method:>5} k={dim:<3} test RMSE {test:.4f} ({time.perf_counter() - start:.0f} s)")
    return fitted, reused


def _rmse_grid(rmse: pd.DataFrame, resolution_mm: float) -> str:
    """method/reading x dim, each cell 'random / blocked [study]', cells the study lacks marked."""
    dims = sorted(rmse["dim"].unique())
    head = "".join(f"<th>k={d}</th>" for d in dims)
    rows = []
    for (method, reading), part in rmse.groupby(["method", "reading"], sort=False):
        cells = []
        for d in dims:
            here = part[part["dim"] == d].set_index("split")["test_rmse"]
            ours = " / ".join(f"{here[s]:.4f}" if s in here else "-" for s in ("random", "blocked"))
            if not study_computed(method, d, resolution_mm):
                cells.append(f"<td class='nc' title='the study could not compute this'>{ours} †</td>")
            else:
                study = STUDY_TEST_RMSE.get(method, {}).get(d)
                ref = f"<br><span class='note'>study {study:.4f}</span>" if study is not None else ""
                cells.append(f"<td>{ours}{ref}</td>")
        name = html.escape(f"{_LABELS.get(method, method)} ({reading})")
        rows.append(f"<tr><td>{name}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>method (reading)</th>{head}</tr>{''.join(rows)}</table>"


def _frame_html(frame: pd.DataFrame, fmt="{:.4f}") -> str:
    if frame is None or frame.empty:
        return "<p class='note'>(none)</p>"
    return frame.to_html(index=False, border=0, na_rep="-", float_format=lambda v: fmt.format(v))


def reproduce_study(
    store,
    out_dir,
    targets=None,
    *,
    methods=STUDY_METHODS,
    dims=STUDY_DIMS,
    splits=("random", "blocked"),
    random_state: int = 0,
    method_params: dict | None = None,
    grid=None,
    n_splits: int = 5,
    n_jobs: int | None = None,
    log=None,
    interpolation: str = "linear",
) -> Path:
    """Run the reference study's protocol on a store and write ``out_dir/reproduce.html``.

    Parameters
    ----------
    store : str, Path or Store
        A brainzarr store (any resolution; the study's are 8 and 4 mm).
    out_dir : str or Path
        Folder of the page, its figures, the evaluation's tables and (without ``targets``) the
        synthetic target maps.
    targets : directory, files or DataArray, optional
        Target maps (NIfTI, MNI space, or maps on the store's voxels; see
        :func:`~brainzarr.evaluate.load_targets`), e.g. the study's PET maps. Default: the five synthetic
        targets made from the store's synthetic truth (a store from ``source='synthetic'``).
    methods, dims : sequences
        Default: the study's six methods at 2, 4, ..., 128 (dims not below the gene count are
        left out).
    splits : str or sequence of {'random', 'blocked'}
        Each method and dim is fitted once per split (``representations/<split>/...``); one name,
        comma-separated names or a list.
    random_state : int
        Seeds every fit, the CV folds and XGBoost; recorded in the store's results.
    method_params : dict, optional
        Per-method estimator parameters, e.g. ``{"ae": {"max_epochs": 50}}``.
    grid, n_splits, n_jobs
        Downstream prediction (see :func:`~brainzarr.evaluate.run_evaluation`).
    log : callable, optional
        Takes one line per step (default: the ``brainzarr`` logger).
    interpolation : {"linear", "nearest", "continuous", "mean"}
        How target maps are read onto the store's grid (see
        :func:`~brainzarr.evaluate.run_evaluation`).

    Returns
    -------
    Path of ``reproduce.html``.
    """
    from ..models.store_fitting import check_methods, rmse_table, selected_dims, selected_methods
    from .figures import plot_r2_bars, plot_rmse_beside_study
    from .prediction import check_cv, check_grid
    from .run import EVALUATION_FILES, is_evaluation_folder, run_evaluation, summary_table
    from .synthetic_targets import model_from_store, write_synthetic_targets
    from .targets import load_targets

    random_state = whole_number(random_state, "random_state", hint=SEED)
    start = time.perf_counter()
    log = log or logger.info
    store, out_dir = location(store), user_path(out_dir)
    refuse_output_in_a_store(out_dir)
    refuse_foreign_outputs(  # before the fits (hours at full scale), not at the evaluation after them
        out_dir,
        (*EVALUATION_FILES, "reproduce.html", "reproduce_rmse.csv"),
        ours=is_evaluation_folder(out_dir),
        job="the reproduction",
    )
    attrs = check_schema(store)
    ds = open_store(store)
    resolution = float(attrs["resolution_mm"])
    if isinstance(splits, str):  # one split, or comma-separated ones: read letter by letter, 'random' was r, a, n, ...
        splits = [s.strip() for s in splits.split(",") if s.strip()]
    splits = list(dict.fromkeys(splits))
    bad = [s for s in splits if s not in ("random", "blocked")]
    if bad or not splits:
        hint = did_you_mean(bad[0], ("random", "blocked"), SPLIT_SYNONYMS) if bad else ""
        raise InputError(f"splits must be 'random' and/or 'blocked', got {splits}{hint}")
    methods, dims = selected_methods(methods) or STUDY_METHODS, selected_dims(dims) or STUDY_DIMS
    kept = [d for d in dims if d < ds.sizes["gene"]]
    if not kept:
        raise InputError(f"no dim in {list(dims)} is below the store's {ds.sizes['gene']} genes")
    check_methods(methods, "the study's protocol", also=("xgboost",))  # before any fit
    method_params = check_method_params(method_params, methods, kept)
    grid = check_grid(grid)  # a misspelt parameter is known before the fits too
    check_cv(n_splits, n_jobs)
    if targets is None:  # the synthetic targets need a synthetic store: known before any fit
        try:
            model_from_store(store)
        except ValueError as exc:
            raise InputError(f"{exc}: give the target maps to predict", options={"targets": "DIR"}) from None
    else:  # a target that cannot be used (no maps, a constant one, not in MNI space) too; read once
        targets = load_targets(targets, ds, interpolation=interpolation)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)

    log(f"reproduce: {len(methods)} methods x {len(kept)} dims x {len(splits)} splits on {store.name}")
    fitted, reused = _fit_all(store, methods, kept, splits, random_state, method_params, log)
    if targets is None:
        log("reproduce: no targets given: the synthetic targets made from the store's synthetic truth")
        targets = write_synthetic_targets(out_dir / "targets", store=store)[0].parent
    log("reproduce: XGBoost on the 2-D embeddings, ANOVA and Tukey")
    result = run_evaluation(
        store,
        targets,
        out_dir,
        methods=list(methods),
        dims=(2,),
        split="both",
        grid=grid,
        n_splits=n_splits,
        random_state=random_state,
        n_jobs=n_jobs,
        interpolation=interpolation,
    )
    rmse = rmse_table(store, methods=list(methods), dims=kept)
    write_file(out_dir / "reproduce_rmse.csv", lambda tmp: rmse.to_csv(tmp, index=False))
    rmse_png = plot_rmse_beside_study(
        rmse,
        STUDY_TEST_RMSE,
        lambda method, dim: study_computed(method, dim, resolution),
        fig_dir / "study_rmse_vs_dim.png",
        labels=_LABELS,
        resolution_mm=resolution,
    )
    r2_png = plot_r2_bars(result.prediction, fig_dir / "study_r2_per_target.png") if len(result.prediction) else None
    summary = summary_table(result.prediction)
    if len(summary):
        summary.insert(
            1, "study_r2_mean", [STUDY_MEAN_R2.get(r.split("-")[0], np.nan) for r in summary["representation"]]
        )

    page = [
        f"<h1>The reference study's protocol on {html.escape(store.name)}</h1>",
        (
            "<p>Ruffle et al., <i>Compressed representation of brain genetic transcription</i>, Hum Brain "
            f"Mapp 2024. This run: {resolution:g} mm, {ds.sizes['voxel']:,} voxels x {ds.sizes['gene']:,} genes; "
            f"methods {', '.join(_LABELS.get(m, m) for m in methods)}; dims {', '.join(map(str, kept))}; "
            f"fitted on the {' and the '.join(splits)} split{'s' if len(splits) > 1 else ''} "
            f"({fitted} fits, {reused} already in the store); seed {random_state}.</p>"
        ),
        "<h2>Reconstruction: test RMSE against dimension</h2>",
        f"<figure><img src='figures/{rmse_png.name}' alt='test RMSE against dimension, the study beside this run'>"
        "<figcaption>Left, the study's values as read off its figure (4 mm); right, this run. Ringed points "
        "and † cells are ones the study could not compute: t-SNE has no inverse, and UMAP's inverse "
        "transform was too costly beyond 2-D (4-D at 8 mm); brainzarr reports them through its decoders: "
        "<i>neighbourhood (kNN)</i> averages the nearest training voxels in the embedding (how well it "
        "keeps neighbourhoods), <i>compression (MLP decoder)</i> is a network that sees the k numbers "
        "alone (how much they carry).</figcaption></figure>",
        "<p>Each cell: random / blocked split test RMSE; the study's value beneath where its figure gives one.</p>",
        _rmse_grid(rmse, resolution),
        "<h2>Downstream prediction: R² per target</h2>",
        (
            f"<figure><img src='figures/{r2_png.name}' alt='R² per target and method'><figcaption>XGBoost "
            "from each 2-D embedding to each target map, grid-searched with CV on the training voxels, "
            "scored on the test voxels; bars are means, points single targets.</figcaption></figure>"
            if r2_png
            else "<p class='note'>No targets: no prediction.</p>"
        ),
        "<p>Mean test R² over targets (study: mean over its 24 PET, MRI and metabolic targets; the "
        "auto-encoder's 0.356, and AE, t-SNE, UMAP well above PCA, kernel PCA, NMF).</p>",
        _frame_html(summary, "{:.3f}"),
        "<h2>ANOVA and Tukey HSD across methods</h2>",
        _frame_html(result.anova, "{:.3g}"),
        _frame_html(result.tukey, "{:.3g}"),
        (
            f"<p class='note'>brainzarr {html.escape(str(__version__))}; {time.perf_counter() - start:.0f} s. "
            "Tables: reproduce_rmse.csv, prediction.csv, anova.csv, tukey.csv. The full report with "
            "maps and viewers: <code>brainzarr report STORE</code>.</p>"
        ),
    ]
    css = (
        "body{font-family:sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:.85em;margin:.8em 0}th,td{border:1px solid #ccc;"
        "padding:.25em .5em;text-align:right}td:first-child{text-align:left}img{max-width:100%}"
        ".note{color:#666;font-size:.9em}td.nc{background:#f3f3f3;color:#777}"
    )
    index = write_text(
        out_dir / "reproduce.html",
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>brainzarr: the study's protocol"
        f"</title><style>{css}</style></head><body>" + "\n".join(page) + "</body></html>\n",
    )
    log(f"reproduce: wrote {index} ({time.perf_counter() - start:.0f} s)")
    return index
