"""Each gene's read-out of the shared features, solved exactly by ridge regression.

Given the features ``F`` (samples x d) of the trained coordinate network, gene ``g``'s
standardised values are modelled as ``F e_g + b_g + delta_{donor, g}``. The coefficients
minimise the squared error over the samples where the gene is observed plus ridge penalties
(``feature_penalty`` relative to the features' mean square, ``donor_penalty`` in units of
samples). All genes observed at the same samples share one factorisation, so a complete table
costs one ``(d + 1 + n_donors)``-sized solve; a gene measured at only some samples gets its
own small solve on the same features: it borrows the spatial structure learned from the
other genes. Its read-out is also shrunk towards the other genes' read-outs (empirical Bayes:
a Gaussian prior whose mean and covariance are those of the well-observed genes' coefficients,
in units of their residual variance), so a gene seen at a few dozen samples gets a typical
gene's pattern adjusted to its data rather than an over-fitted one.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InputError

__all__ = ["solve_readout"]


def solve_readout(
    features: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray | None,
    donor: np.ndarray | None,
    n_donors: int,
    *,
    feature_penalty: float = 1e-3,
    donor_penalty: float = 30.0,
):
    """Ridge read-out of every gene.

    Parameters
    ----------
    features : (n, d) array
    values : (n, G) array
        Standardised values (anything finite where unobserved).
    mask : (n, G) bool, optional
        Observed entries (default: all).
    donor : (n,) int, optional
        Donor index per sample; None fits no donor offsets.
    n_donors : int
    feature_penalty, donor_penalty : float
        Ridge penalties of the embeddings and of the donor offsets.

    Returns
    -------
    embeddings : (d, G) float32
    bias : (G,) float32
    donor_offsets : (n_donors, G) float32 (zeros without donors)
    """
    F = np.asarray(features, dtype=np.float64)
    n, d = F.shape
    use_donors = donor is not None and n_donors > 0
    if use_donors and donor_penalty <= 0:
        raise InputError("donor_penalty must be positive (donor offsets and the intercept are collinear)")
    cols = [F, np.ones((n, 1))]
    if use_donors:
        cols.append(np.eye(n_donors)[np.asarray(donor)])
    A = np.hstack(cols)
    scale = max(float(np.mean(F**2)), 1e-12)
    penalty = np.r_[np.full(d, feature_penalty * scale), 0.0, np.full(n_donors if use_donors else 0, donor_penalty)]
    values = np.asarray(values)
    n_genes = values.shape[1]
    coef = np.zeros((A.shape[1], n_genes))
    if mask is None:
        groups = [(np.ones(n, dtype=bool), np.arange(n_genes))]
    else:
        mask = np.asarray(mask, dtype=bool)
        patterns, inverse = np.unique(np.packbits(mask, axis=0), axis=1, return_inverse=True)
        inverse = inverse.reshape(-1)
        groups = [
            (mask[:, np.flatnonzero(inverse == p)[0]], np.flatnonzero(inverse == p)) for p in range(patterns.shape[1])
        ]
    prior = None
    for stage in ("ridge", "prior"):
        for rows, genes in groups:
            rows = np.flatnonzero(rows)
            if stage == "prior" and len(rows) == n:
                continue  # complete genes keep their ridge solution (the prior would barely move them)
            Ar = A[rows]
            gram = Ar.T @ Ar + np.diag(penalty)
            shift = np.zeros((A.shape[1], 1))
            if stage == "prior":
                gram[: d + 1, : d + 1] += prior[1]
                shift[: d + 1, 0] = prior[1] @ prior[0]
            # a gene seen at few samples: a tiny jitter keeps its system solvable
            gram[np.diag_indices_from(gram)] += 1e-9 * max(1.0, np.trace(gram) / len(gram))
            for a in range(0, len(genes), 4096):  # in gene chunks: no full-size float64 copy
                g = genes[a : a + 4096]
                block = values[:, g] if len(rows) == n else values[np.ix_(rows, g)]
                coef[:, g] = np.linalg.solve(gram, Ar.T @ np.asarray(block, dtype=np.float64) + shift)
        prior = None if mask is None or mask.all() else _coefficient_prior(A, coef, values, mask, d)
        if prior is None:
            break
    embeddings = coef[:d].astype(np.float32)
    bias = coef[d].astype(np.float32)
    offsets = coef[d + 1 :].astype(np.float32) if use_donors else np.zeros((n_donors, n_genes), np.float32)
    return embeddings, bias, offsets


def _coefficient_prior(A, coef, values, mask, d):
    """Mean and precision (in units of the residual variance) of the genes' feature and intercept
    coefficients, from the well-observed genes (>= 90 % of samples; all genes if too few);
    None when there are fewer genes than twice the coefficients."""
    frac = mask.mean(axis=0)
    well = np.flatnonzero(frac >= 0.9)
    if len(well) < 2 * (d + 1):
        well = np.arange(mask.shape[1])
    if len(well) < 2 * (d + 1):
        return None  # too few genes to learn from
    well = well[np.linspace(0, len(well) - 1, min(len(well), 4096)).round().astype(int)]
    c = coef[: d + 1, well]
    mean = c.mean(axis=1)
    cov = np.cov(c) + 1e-6 * np.eye(d + 1) * max(float(np.trace(np.atleast_2d(np.cov(c)))) / (d + 1), 1e-12)
    resid = (np.asarray(values[:, well], dtype=np.float64) - A @ coef[:, well]) ** 2
    noise = float((resid * mask[:, well]).sum() / max(mask[:, well].sum(), 1))
    return mean, noise * np.linalg.inv(cov)
