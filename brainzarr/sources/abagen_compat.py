"""The parts of abagen 0.1.3's probe selection that do not run on pandas >= 2, rewritten.

abagen 0.1.3 fails on pandas 2/3 in ``abagen.probes_.collapse_probes``: the
``diff_stability`` method averages samples per structure with ``groupby(..., axis=1)``
(``probes_.py:147``, removed in pandas 3) and every selection method renames the chosen
probes with ``set_axis(..., inplace=False)`` (``probes_.py:757``, removed in pandas 2).
This module re-implements ``collapse_probes(..., donor_probes='aggregate')`` for the methods
:data:`PROBE_SELECTIONS` with abagen's semantics, on a memory-lean representation:

* every donor is one :class:`DonorProbes`: the probe x *distinct sample* expression matrix
  as read from ``MicroarrayExpression.csv`` (float64, filtered probes only) plus, for every
  row of the donor's (possibly mirrored) annotation, the matrix column it takes its values
  from and its ``structure_id``. abagen duplicates the columns of mirrored samples; here
  duplicates are only indices, so mirroring costs memory only in blocks.
* ``diff_stability`` (:func:`diff_stability`): per donor, each probe's expression is averaged
  over the annotation rows sharing a ``structure_id`` (the AHBA ontology structure of the
  sample, after mirroring the hemisphere-swapped structure: *not* atlas regions, so nothing
  depends on an atlas); for every pair of donors, the Spearman correlation across their
  common structures is computed per probe; a probe's differential stability is the mean over
  pairs; per gene the probe with the highest value wins (ties: the first in probe order;
  genes whose probes all score NaN are dropped, as abagen's ``idxmax(...).dropna()``).
* ``max_intensity`` / ``max_variance``: mean / standard deviation (ddof 1) of each probe
  over the samples of all donors (mirrored copies counted, as abagen counts them).
* ``average`` / ``mean``: the mean over a gene's probes, per sample.

The result of :func:`collapse_probes` is a gene order (sorted symbols, as abagen's
``sort_index(axis=1)``) and, per gene, the probe rows to average (one row for selection
methods); :func:`donor_expression` turns it into a sample x gene array for one donor.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..exceptions import InputError

__all__ = [
    "PROBE_SELECTIONS",
    "DonorProbes",
    "CollapsedProbes",
    "region_average",
    "spearman_columns",
    "diff_stability",
    "select_max",
    "collapse_probes",
    "donor_expression",
]

#: probe_selection values supported (abagen names).
PROBE_SELECTIONS = ("diff_stability", "average", "mean", "max_intensity", "max_variance")


@dataclass
class DonorProbes:
    """One donor's filtered microarray data.

    Attributes
    ----------
    values : (P, S) float ndarray
        Expression of the ``P`` filtered probes (rows in the order of the probe table) in the
        donor's ``S`` distinct samples (columns of ``MicroarrayExpression.csv``).
    columns : (A,) int ndarray
        For each row of the donor's annotation (mirrored copies included), the column of
        ``values`` holding its expression.
    structure_id : (A,) int ndarray
        Each annotation row's ``structure_id`` (hemisphere-swapped for mirrored copies).
    """

    values: np.ndarray
    columns: np.ndarray
    structure_id: np.ndarray

    def __post_init__(self):
        self.columns = np.asarray(self.columns, dtype=np.intp)
        self.structure_id = np.asarray(self.structure_id)
        if self.columns.shape != self.structure_id.shape:
            raise InputError("columns and structure_id need one entry per annotation row")
        if self.columns.size and (self.columns.min() < 0 or self.columns.max() >= self.values.shape[1]):
            raise InputError("annotation rows point at columns outside the expression matrix")


@dataclass
class CollapsedProbes:
    """Result of :func:`collapse_probes`.

    Attributes
    ----------
    genes : (G,) ndarray of str
        Gene symbols, sorted.
    rows : list of (k,) int ndarray
        For each gene, the probe rows (into the probe table) whose mean is the gene's value;
        a single row for the selection methods.
    probe_id : (G,) int ndarray
        The selected probe's id, or -1 where probes were averaged.
    n_probes : (G,) int ndarray
        Number of (filtered) probes of the gene.
    score : (G,) float ndarray
        The selection statistic of the chosen probe (NaN for averaging).
    """

    genes: np.ndarray
    rows: list
    probe_id: np.ndarray
    n_probes: np.ndarray
    score: np.ndarray


def region_average(donor: DonorProbes, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Average each probe over the annotation rows of each ``structure_id``.

    Exactly abagen's ``_groupby_structure_id`` (``microarray.groupby(sid, axis=1).mean()`` on
    the column-duplicated matrix) written as a row groupby of the transpose, in blocks of
    ``chunk`` probes so that the duplicated matrix never exists whole. The sums run in
    annotation order as in abagen, which matters: with bidirectional mirroring a left and a
    right structure hold the same samples in a different order, and their means then differ
    (or not) in the last bit, which decides tied ranks in :func:`diff_stability`.

    Returns
    -------
    means : (P, R) ndarray
    regions : (R,) ndarray, sorted structure ids
    """
    regions = np.unique(donor.structure_id)
    n_probes = donor.values.shape[0]
    means = np.empty((n_probes, len(regions)))
    for start in range(0, n_probes, chunk):
        block = donor.values[start : start + chunk][:, donor.columns].T  # annotation rows x probes
        grouped = pd.DataFrame(block).groupby(donor.structure_id, sort=True).mean()
        means[start : start + chunk] = grouped.to_numpy().T
    return means, regions


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of matching columns of ``a`` and ``b`` (n, m) -> (m,).

    Ranks as pandas' ``DataFrame.rank()`` (average ties), correlation as abagen's
    ``utils.efficient_corr`` (z-scores with ddof 1; NaN for constant columns; NaN when
    there are fewer than two rows).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise InputError("arrays need the same number of rows")
    if len(a) < 2:
        return np.full(a.shape[1], np.nan)
    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        za = (ra - ra.mean(axis=0)) / ra.std(axis=0, ddof=1)
        zb = (rb - rb.mean(axis=0)) / rb.std(axis=0, ddof=1)
        return np.sum(za * zb, axis=0) / (len(a) - 1)


def diff_stability(donors: list[DonorProbes]) -> np.ndarray:
    """Differential stability of every probe: mean over donor pairs of the Spearman
    correlation of its structure-averaged expression across the pair's common structures."""
    if len(donors) < 2:
        raise InputError("diff_stability needs at least two donors")
    region = [region_average(d) for d in donors]
    n_probes = donors[0].values.shape[0]
    pairs = list(itertools.combinations(region, 2))
    scores = np.zeros((n_probes, len(pairs)))
    for n, ((m1, r1), (m2, r2)) in enumerate(pairs):
        common, i1, i2 = np.intersect1d(r1, r2, return_indices=True)
        scores[:, n] = spearman_columns(m1[:, i1].T, m2[:, i2].T)
    return scores.mean(axis=1)


def _weighted_moments(donors: list[DonorProbes]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 1) of each probe over all annotation rows."""
    n_rows = sum(len(d.columns) for d in donors)
    total = sum(d.values @ np.bincount(d.columns, minlength=d.values.shape[1]) for d in donors)
    mean = total / n_rows
    ss = sum(((d.values - mean[:, None]) ** 2) @ np.bincount(d.columns, minlength=d.values.shape[1]) for d in donors)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(ss / (n_rows - 1))
    return mean, std


def select_max(score: np.ndarray, gene_symbol) -> tuple[np.ndarray, np.ndarray]:
    """Per gene, the row with the largest ``score`` (first on ties; NaN skipped).

    Genes whose rows are all NaN are dropped. Returns (sorted gene symbols, chosen rows).
    """
    symbols = np.asarray(gene_symbol).astype(str)
    score = np.asarray(score, dtype=float)
    genes, gene_of_row = np.unique(symbols, return_inverse=True)
    order = np.lexsort((np.arange(len(score)), np.where(np.isnan(score), np.inf, -score), gene_of_row))
    first = np.ones(len(order), dtype=bool)
    first[1:] = gene_of_row[order][1:] != gene_of_row[order][:-1]
    chosen = order[first]  # one row per gene, genes in sorted order
    ok = ~np.isnan(score[chosen])
    return genes[ok], chosen[ok]


def collapse_probes(
    donors: list[DonorProbes], gene_symbol, probe_id, method: str = "diff_stability"
) -> CollapsedProbes:
    """Reduce probes to genes as ``abagen.probes_.collapse_probes(..., donor_probes='aggregate')``.

    Parameters
    ----------
    donors : list of DonorProbes
        All donors, with the same probe rows.
    gene_symbol, probe_id : (P,) array_like
        The probe table's gene symbols and probe ids, in row order.
    method : one of :data:`PROBE_SELECTIONS`
    """
    if method not in PROBE_SELECTIONS:
        raise InputError(f"probe_selection {method!r} is not supported; use one of {list(PROBE_SELECTIONS)}")
    gene_symbol = np.asarray(gene_symbol).astype(str)
    probe_id = np.asarray(probe_id)
    if not donors:
        raise InputError("no donors")
    if any(d.values.shape[0] != len(gene_symbol) for d in donors):
        raise InputError("every donor needs one row per probe")
    genes_all, gene_of_row, n_per_gene = np.unique(gene_symbol, return_inverse=True, return_counts=True)
    if method in ("average", "mean"):
        order = np.argsort(gene_of_row, kind="stable")
        rows = np.split(order, np.cumsum(n_per_gene)[:-1])
        return CollapsedProbes(
            genes=genes_all,
            rows=rows,
            probe_id=np.full(len(genes_all), -1),
            n_probes=n_per_gene,
            score=np.full(len(genes_all), np.nan),
        )
    if method == "diff_stability":
        score = diff_stability(donors)
    else:
        mean, std = _weighted_moments(donors)
        score = mean if method == "max_intensity" else std
    genes, chosen = select_max(score, gene_symbol)
    n_probes = n_per_gene[np.searchsorted(genes_all, genes)]
    return CollapsedProbes(
        genes=genes,
        rows=[np.array([r]) for r in chosen],
        probe_id=probe_id[chosen],
        n_probes=n_probes,
        score=score[chosen],
    )


def donor_expression(donor: DonorProbes, collapsed: CollapsedProbes) -> np.ndarray:
    """The donor's annotation rows x genes expression (float64) under ``collapsed``."""
    if all(len(r) == 1 for r in collapsed.rows):
        per_sample = (
            donor.values[np.concatenate(collapsed.rows)] if collapsed.rows else np.empty((0, donor.values.shape[1]))
        )
    else:
        per_sample = np.stack([donor.values[r].mean(axis=0) for r in collapsed.rows])
    return np.ascontiguousarray(per_sample[:, donor.columns].T)
