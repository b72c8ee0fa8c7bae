"""Statistics across methods: one-way ANOVA and Tukey's HSD on per-target R², as the study reports.

For each split scheme, the groups are the representations and the observations the test R² of
each target. The targets are the same for every representation (a repeated-measures design);
like the reference study this uses the one-way (independent groups) tests of
:func:`scipy.stats.f_oneway` and :func:`scipy.stats.tukey_hsd`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._validation import Bound, checked, did_you_mean
from ..exceptions import InputError

__all__ = ["anova_tukey"]


def anova_tukey(
    results: pd.DataFrame,
    *,
    value: str = "r2",
    by: str = "representation",
    within: str = "split",
    confidence: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One-way ANOVA and Tukey HSD of ``value`` across ``by`` groups, for each ``within`` level.

    Parameters
    ----------
    results : DataFrame
        Tidy results (e.g. from :func:`brainzarr.evaluate.predict_targets`).
    value, by, within : str
        Column compared, grouping column, column the tests are run separately for.
    confidence : float
        Confidence level of Tukey's intervals.

    Returns
    -------
    anova : DataFrame
        One row per ``within`` level: ``F, p, df_between, df_within, n_groups, n_obs``.
    tukey : DataFrame
        One row per pair of groups and level: ``group_a, group_b, mean_diff`` (a - b), ``p``,
        ``ci_low, ci_high``, ``significant`` (p < 1 - confidence).
        Levels with fewer than two groups or fewer than two observations in a group are skipped.
    """
    from scipy import stats

    # scipy refused 95 (a percentage) with its own message, only once a level had two groups
    checked(confidence, "confidence", Bound(0, 1, low_open=True, high_open=True))
    missing = [c for c in (value, by, within) if c and c not in results.columns]
    if missing:  # a KeyError named only the column
        columns = [str(c) for c in results.columns]
        raise InputError(
            f"the results have no column {', '.join(map(repr, missing))}{did_you_mean(missing[0], columns)}; "
            f"they have {', '.join(columns)}"
        )
    anova_rows, tukey_rows = [], []
    levels = results[within].unique() if within else [None]
    for level in levels:
        frame = results if level is None else results[results[within] == level]
        names = sorted(frame[by].unique())
        samples = [frame.loc[frame[by] == n, value].dropna().to_numpy(float) for n in names]
        if len(names) < 2 or min(len(s) for s in samples) < 2:
            continue
        # no spread within groups (each representation's R² the same on every target): F is
        # infinite or undefined, said by the caller; numpy's divide warnings would say nothing
        with np.errstate(divide="ignore", invalid="ignore"):
            f = stats.f_oneway(*samples)
            tukey = stats.tukey_hsd(*samples)
            ci = tukey.confidence_interval(confidence_level=confidence)
        n_obs = sum(len(s) for s in samples)
        anova_rows.append(
            {
                within or "level": level,
                "F": float(f.statistic),
                "p": float(f.pvalue),
                "df_between": len(names) - 1,
                "df_within": n_obs - len(names),
                "n_groups": len(names),
                "n_obs": n_obs,
            }
        )
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                tukey_rows.append(
                    {
                        within or "level": level,
                        "group_a": names[a],
                        "group_b": names[b],
                        "mean_diff": float(tukey.statistic[a, b]),
                        "p": float(tukey.pvalue[a, b]),
                        "ci_low": float(ci.low[a, b]),
                        "ci_high": float(ci.high[a, b]),
                        "significant": bool(tukey.pvalue[a, b] < 1 - confidence),
                    }
                )
    key = within or "level"
    anova = pd.DataFrame(anova_rows, columns=[key, "F", "p", "df_between", "df_within", "n_groups", "n_obs"])
    tukey = pd.DataFrame(
        tukey_rows, columns=[key, "group_a", "group_b", "mean_diff", "p", "ci_low", "ci_high", "significant"]
    )
    return anova, tukey
