"""The held-out figure: per-gene RMSE of each method, and the INR against IDW gene by gene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import write_file

__all__ = ["plot_heldout"]


def plot_heldout(df: pd.DataFrame, path, *, title: str | None = None) -> Path:
    """Box plots of per-gene pooled RMSE per method (one panel per cv scheme) and INR vs IDW scatter."""
    import matplotlib.pyplot as plt

    d = df.assign(sq=df["rmse"] ** 2 * df["n_test"])
    per_gene = d.groupby(["cv", "method", "gene"], sort=False)[["sq", "n_test"]].sum()
    per_gene = np.sqrt(per_gene["sq"] / per_gene["n_test"]).rename("rmse").reset_index()
    schemes = list(dict.fromkeys(per_gene["cv"]))
    fig, axes = plt.subplots(len(schemes), 2, figsize=(11, 4 * len(schemes)), squeeze=False)
    for row, cv in zip(axes, schemes):
        sub = per_gene[per_gene["cv"] == cv]
        methods = list(dict.fromkeys(sub["method"]))
        row[0].boxplot([sub.loc[sub["method"] == m, "rmse"] for m in methods], showfliers=False)
        row[0].set_xticks(range(1, len(methods) + 1), methods, rotation=20)
        row[0].set_ylabel("held-out RMSE per gene")
        row[0].set_title(f"{cv}: per-gene RMSE on held-out samples")
        wide = sub.pivot(index="gene", columns="method", values="rmse")
        if {"inr", "idw"} <= set(wide.columns):
            row[1].scatter(wide["idw"], wide["inr"], s=4, alpha=0.4)
            lo, hi = np.nanmin(wide[["idw", "inr"]].values), np.nanmax(wide[["idw", "inr"]].values)
            row[1].plot([lo, hi], [lo, hi], "k--", lw=1)
            row[1].set_xlabel("IDW (k = 10) RMSE")
            row[1].set_ylabel("INR RMSE")
            row[1].set_title(f"{cv}: INR below the line beats IDW ({np.mean(wide['inr'] < wide['idw']):.0%} of genes)")
        else:
            row[1].axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = write_file(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path
