"""Honest evaluation of interpolators on held-out samples, and of maps against the truth.

* :func:`make_folds`: k-fold over spatial blocks of samples (cubes of ``block_mm``, whole
  cubes to one fold, folds balanced by sample count) or leave-one-donor-out.
* :func:`cross_validate`: every method fitted on the training samples of each fold and scored
  on the held-out ones: per gene and fold, RMSE and Pearson r (``heldout.csv``). On synthetic
  data the true field's own error against the held-out samples is the noise floor
  (``true_field``): no method can beat it on average except by knowing the donor.
* :func:`summarize`: per method, each gene's RMSE pooled over folds, then its spread over genes
  and the change relative to IDW.
* :func:`map_scores`: streamed over the voxels of a grid: each method's map against the true
  field (synthetic data) and, as a secondary number only, its agreement (Pearson r over
  voxels) with the IDW map, which is how the reference INR study scored itself.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .._deprecation import renamed_kwargs
from .._progress import step
from .._validation import Bound, checked, did_you_mean
from ..exceptions import InputError
from ..preprocess import spatial_blocks
from .baselines import make_baseline
from .model import GeneINR

__all__ = ["make_folds", "cross_validate", "summarize", "map_scores", "synthetic_truth", "METHODS", "CV_SCHEMES"]

METHODS = ("inr", "idw", "nearest", "kriging")
CV_SCHEMES = ("blocks", "donors")
#: extra rows: the INR plus the held-out sample's donor offsets (only where that donor was seen)
#: and, on synthetic data, the true population field (the noise floor)
DONOR_AWARE, TRUE_FIELD = "inr_donor", "true_field"


@renamed_kwargs(seed="random_state")
def make_folds(table, cv: str = "blocks", *, n_folds: int = 5, block_mm: float = 16.0, random_state: int = 0):
    """Held-out folds of a sample table: a list of ``(name, train_index, test_index)``.

    ``'blocks'``: samples are grouped into ``block_mm`` cubes of MNI space; cubes are dealt in
    a seeded random order to the fold with the fewest samples so far. ``'donors'``: one fold
    per donor (leave-one-donor-out).
    """
    if cv == "blocks":
        if n_folds < 2:
            raise InputError("blocked cross-validation needs at least 2 folds")
        xyz = np.column_stack([table[c].values for c in "xyz"])
        block = spatial_blocks(xyz, block_mm)
        counts = np.bincount(block)
        if len(counts) < n_folds:
            raise InputError(f"only {len(counts)} blocks of {block_mm} mm for {n_folds} folds; use smaller blocks")
        fold_of_block = np.empty(len(counts), dtype=np.int64)
        sizes = np.zeros(n_folds, dtype=np.int64)
        for b in np.random.default_rng(random_state).permutation(len(counts)):
            f = int(np.argmin(sizes))
            fold_of_block[b] = f
            sizes[f] += counts[b]
        fold = fold_of_block[block]
        names = [f"block{f}" for f in range(n_folds)]
    elif cv == "donors":
        labels, fold = np.unique(table["donor"].values.astype(str), return_inverse=True)
        if len(labels) < 2:
            raise InputError("leave-one-donor-out needs at least 2 donors")
        names = [f"donor{d}" for d in labels]
    else:
        raise InputError(f"unknown cv {cv!r}; choose from {', '.join(CV_SCHEMES)}")
    return [(name, np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f, name in enumerate(names)]


def synthetic_truth(table):
    """The true field ``f(xyz, genes)`` of a synthetic sample table, or None for other sources."""
    if table.attrs.get("source") != "synthetic":
        return None
    from ..sources.synthetic import SyntheticModel

    options = json.loads(table.attrs.get("options", "{}"))
    fields = SyntheticModel.__dataclass_fields__
    return SyntheticModel(**{k: v for k, v in options.items() if k in fields}).expression


@renamed_kwargs(seed="random_state")
def make_method(
    name: str, *, random_state: int = 0, inr_params: dict | None = None, kriging_params: dict | None = None
):
    if name == "inr":
        return GeneINR(**({"random_state": random_state} | (inr_params or {})))
    return make_baseline(name, random_state=random_state, **((kriging_params or {}) if name == "kriging" else {}))


def _per_gene(pred, obs):
    err = pred.astype(np.float64) - obs
    rmse = np.sqrt(np.mean(err**2, axis=0))
    pc = pred - pred.mean(axis=0)
    oc = obs - obs.mean(axis=0)
    denom = np.sqrt((pc**2).sum(axis=0) * (oc**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (pc * oc).sum(axis=0) / denom, np.nan)
    return rmse, r


@renamed_kwargs(seed="random_state")
def cross_validate(
    table,
    *,
    methods=METHODS,
    cv: str = "blocks",
    n_folds: int = 5,
    block_mm: float = 16.0,
    random_state: int = 0,
    inr_params: dict | None = None,
    kriging_params: dict | None = None,
    truth=None,
    donor_aware: bool = True,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Held-out scores of every method on every fold (see :func:`make_folds`).

    Parameters
    ----------
    table : xarray.Dataset
        A complete sample table.
    methods : str or sequence of {'inr', 'idw', 'nearest', 'kriging'}
        One name, comma-separated names or a list.
    cv : {'blocks', 'donors'}
        Spatial blocks of ``block_mm`` dealt to ``n_folds`` folds, or leave-one-donor-out (see
        :func:`make_folds`).
    n_folds : int
        Folds of ``'blocks'``.
    block_mm : float
        Cube edge of ``'blocks'``, in mm.
    random_state : int
        Seeds the folds and every method's fit.
    inr_params, kriging_params : dict, optional
        Parameters of :class:`~brainzarr.inr.GeneINR` and of :class:`~brainzarr.inr.KrigingInterpolator`.
    truth : callable(xyz, genes) -> (n, g), optional
        The true field (default: the synthetic source's, when the table is synthetic); adds
        rows for method ``'true_field'``, the noise floor.
    donor_aware : bool
        With 'inr', add rows ``'inr_donor'``: the population map plus the held-out sample's
        donor offsets (learned from that donor's training samples; blocks only, since a
        left-out donor has none).
    progress : bool, optional
        A progress bar over the fits (default: :func:`brainzarr.set_options`'s, on a terminal).

    Returns
    -------
    pandas.DataFrame
        One row per method x gene x fold: ``cv, method, gene, fold, rmse, pearson_r, n_test``.
    """
    if isinstance(methods, str):  # one name, or comma-separated: read letter by letter, 'idw' was i, d, w
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        hint = did_you_mean(unknown[0], METHODS) if unknown else ""
        raise InputError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}{hint}")
    n_folds = int(checked(n_folds, "n_folds", Bound(2, integer=True)))
    if truth is None:
        truth = synthetic_truth(table)
    genes = table["gene"].values.astype(str)
    values = np.asarray(table["expression"].values, dtype=np.float32)
    xyz = np.column_stack([table[c].values for c in "xyz"])
    donors = table["donor"].values.astype(str)
    folds = make_folds(table, cv, n_folds=n_folds, block_mm=block_mm, random_state=random_state)
    frames = []
    with step(len(folds) * len(methods), f"held-out ({cv})", unit="fit", progress=progress) as bar:
        for name, train_idx, test_idx in folds:
            obs = values[test_idx]
            preds = {}
            if truth is not None:
                preds[TRUE_FIELD] = truth(xyz[test_idx], genes)
            for method in methods:
                bar.note(fold=name, method=method)
                model = make_method(
                    method, random_state=random_state, inr_params=inr_params, kriging_params=kriging_params
                )
                model.fit(table.isel(sample=train_idx))
                preds[method] = model.predict(xyz[test_idx])
                if method == "inr" and donor_aware and cv == "blocks" and model.donor_effects:
                    # a donor with no training sample in this fold has no offsets: expected
                    preds[DONOR_AWARE] = model.predict(xyz[test_idx], donor=donors[test_idx], warn_unknown=False)
                bar.update(1)
            for method, pred in preds.items():
                rmse, r = _per_gene(pred, obs)
                frames.append(
                    pd.DataFrame(
                        {
                            "cv": cv,
                            "method": method,
                            "gene": genes,
                            "fold": name,
                            "rmse": rmse,
                            "pearson_r": r,
                            "n_test": len(test_idx),
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


def summarize(df: pd.DataFrame, reference: str = "idw") -> pd.DataFrame:
    """Per cv scheme and method: each gene's RMSE pooled over folds, summarised over genes.

    Columns: ``rmse_mean, rmse_median, rmse_sd, rmse_p10, rmse_p90`` (over genes),
    ``pearson_r_mean`` (each gene's fold-weighted mean r, averaged over genes),
    ``vs_<reference>_pct`` (mean RMSE relative to the reference's, in %: negative is better)
    and ``genes_better_than_<reference>`` (fraction of genes with a lower pooled RMSE).
    """
    d = df.assign(sq=df["rmse"] ** 2 * df["n_test"], rw=df["pearson_r"] * df["n_test"])
    d["rw_n"] = np.where(df["pearson_r"].notna(), df["n_test"], 0)
    per_gene = d.groupby(["cv", "method", "gene"], sort=False).agg(
        sq=("sq", "sum"), n=("n_test", "sum"), rw=("rw", "sum"), rw_n=("rw_n", "sum")
    )
    per_gene["rmse"] = np.sqrt(per_gene["sq"] / per_gene["n"])
    per_gene["r"] = per_gene["rw"] / per_gene["rw_n"].where(per_gene["rw_n"] > 0)
    rows = []
    for (cv, method), g in per_gene.groupby(level=["cv", "method"], sort=False):
        rmse = g["rmse"].to_numpy()
        row = {
            "cv": cv,
            "method": method,
            "n_genes": len(g),
            "rmse_mean": rmse.mean(),
            "rmse_median": np.median(rmse),
            "rmse_sd": rmse.std(),
            "rmse_p10": np.percentile(rmse, 10),
            "rmse_p90": np.percentile(rmse, 90),
            "pearson_r_mean": g["r"].mean(),
        }
        if (cv, reference) in per_gene.index.droplevel("gene"):
            ref = per_gene.loc[(cv, reference)]["rmse"].reindex(g.index.get_level_values("gene")).to_numpy()
            row[f"vs_{reference}_pct"] = 100.0 * (rmse.mean() / ref.mean() - 1.0)
            row[f"genes_better_than_{reference}"] = float(np.mean(rmse < ref))
        rows.append(row)
    return pd.DataFrame(rows)


def map_scores(
    fitted: dict,
    grid,
    genes,
    *,
    truth=None,
    reference: str = "idw",
    block_rows: int = 4096,
    gene_block: int = 2048,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Compare fitted methods' maps over every voxel of ``grid``, streamed in blocks.

    Parameters
    ----------
    fitted : dict name -> fitted model with ``predict(xyz, genes=index)``
    grid : brainzarr.grid.Grid
    genes : sequence of str
        The models' genes (in their order).
    truth : callable(xyz, genes), optional
        The true field: adds ``rmse_vs_truth`` and ``r_vs_truth`` per method and gene.
    reference : str
        The method whose map the others are correlated with (``r_vs_<reference>``, secondary).
    block_rows, gene_block : int
        Voxels and genes predicted at once (memory grows with their product).
    progress : bool, optional
        A progress bar over the voxel blocks (default: :func:`brainzarr.set_options`'s).

    Returns
    -------
    pandas.DataFrame
        One row per method x gene.
    """
    genes = np.asarray(genes, dtype=str)
    xyz = grid.xyz
    n_genes = len(genes)
    names = list(fitted)
    keys = ("n", "s_p", "s_pp", "s_t", "s_tt", "s_pt", "s_e", "s_r", "s_rr", "s_pr")
    acc = {m: {k: np.zeros(n_genes) for k in keys} for m in names}
    blocks = [(a, min(a + block_rows, len(xyz))) for a in range(0, len(xyz), block_rows)]
    with step(len(blocks), "maps", unit="block", progress=progress) as bar:
        for a, b in blocks:
            for g0 in range(0, n_genes, gene_block):
                idx = np.arange(g0, min(g0 + gene_block, n_genes))
                t = None if truth is None else truth(xyz[a:b], genes[idx]).astype(np.float64)
                preds = {m: fitted[m].predict(xyz[a:b], genes=idx).astype(np.float64) for m in names}
                ref = preds.get(reference)
                for m, p in preds.items():
                    s = acc[m]
                    s["n"][idx] += b - a
                    s["s_p"][idx] += p.sum(0)
                    s["s_pp"][idx] += (p * p).sum(0)
                    if t is not None:
                        s["s_t"][idx] += t.sum(0)
                        s["s_tt"][idx] += (t * t).sum(0)
                        s["s_pt"][idx] += (p * t).sum(0)
                        s["s_e"][idx] += ((p - t) ** 2).sum(0)
                    if ref is not None:
                        s["s_r"][idx] += ref.sum(0)
                        s["s_rr"][idx] += (ref * ref).sum(0)
                        s["s_pr"][idx] += (p * ref).sum(0)
            bar.update(1)
    frames = []
    for m in names:
        s = acc[m]
        row = {"method": m, "gene": genes, "n_voxels": s["n"].astype(int)}
        if truth is not None:
            row["rmse_vs_truth"] = np.sqrt(s["s_e"] / s["n"])
            row["r_vs_truth"] = _corr(s["n"], s["s_p"], s["s_pp"], s["s_t"], s["s_tt"], s["s_pt"])
        if reference in fitted:
            row[f"r_vs_{reference}_secondary"] = _corr(s["n"], s["s_p"], s["s_pp"], s["s_r"], s["s_rr"], s["s_pr"])
        frames.append(pd.DataFrame(row))
    return pd.concat(frames, ignore_index=True)


def _corr(n, sa, saa, sb, sbb, sab):
    cov = sab - sa * sb / n
    va = saa - sa * sa / n
    vb = sbb - sb * sb / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((va > 0) & (vb > 0), cov / np.sqrt(va * vb), np.nan)
