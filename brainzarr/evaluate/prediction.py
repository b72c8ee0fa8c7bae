"""Downstream prediction: XGBoost from an embedding to a target map, as the reference study does.

For each representation (an embedding ``(voxel, component)``), each target map and each split
scheme, an ``xgboost.XGBRegressor`` is grid-searched with k-fold cross-validation on the
training voxels, refitted on all of them with the best parameters, and scored on the test
voxels (R², RMSE). Voxels where the target or the embedding is missing are left out (counted).

Honest splits
-------------
* ``random``: the study's random voxel split; CV folds are random too. Neighbouring voxels are
  near-copies of each other, so test voxels have near-duplicates in training: optimistic.
* ``blocked``: whole cubes of ``block_mm`` (the store's blocked split) are test; the CV folds
  within the training voxels are also made of whole cubes (``GroupKFold`` on cube ids), so the
  hyper-parameters are not chosen by leakage either.

The grid
--------
:data:`DEFAULT_GRID` is modest (2 depths x 3 ensemble sizes = 6 candidates), affordable on two
cores: one boosted fit per (depth, learning rate, ...) and fold is scored at every ensemble
size of the grid with ``predict(iteration_range=(0, n))``, which gives exactly the predictions
of a model fitted with ``n_estimators=n`` (boosting is sequential), so the search costs 2 fits
per fold instead of 6 (timings: ``docs/design.md``). :data:`LARGE_GRID` (150 candidates, 30
fits per fold) is closer to a thorough search; any XGBoost parameter may be gridded with
``grid=``. The reference study grid-searched too (its grid is not published in detail).

Seeds: ``random_state`` shuffles the CV folds and seeds XGBoost; it is recorded (as ``seed``) in
every result row.
"""

from __future__ import annotations

import itertools
import json
import os
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
import pandas as pd

from .._deprecation import renamed_kwargs
from .._optional import require
from .._progress import step
from .._validation import Bound, checked, did_you_mean
from ..exceptions import InputError
from ..preprocess import spatial_blocks

__all__ = [
    "DEFAULT_GRID",
    "LARGE_GRID",
    "GRIDS",
    "parse_grid",
    "check_grid",
    "check_cv",
    "FIXED_PARAMS",
    "cv_folds",
    "grid_search",
    "fit_score",
    "predict_targets",
]

#: hyper-parameter grid searched by default (see the module docstring)
DEFAULT_GRID = {"max_depth": [3, 6], "learning_rate": [0.1], "n_estimators": [50, 100, 200]}
#: a more thorough grid (about 15x the cost of the default)
LARGE_GRID = {
    "max_depth": [2, 3, 4, 6, 8],
    "learning_rate": [0.03, 0.1, 0.3],
    "subsample": [0.8, 1.0],
    "n_estimators": [50, 100, 200, 400, 800],
}
GRIDS = {"default": DEFAULT_GRID, "large": LARGE_GRID}
#: XGBoost parameters that are not searched
FIXED_PARAMS = {"tree_method": "hist", "n_jobs": 1, "verbosity": 0}


@renamed_kwargs(seed="random_state")
def cv_folds(n: int, *, n_splits: int = 5, groups=None, random_state: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) index pairs over ``n`` rows: random folds, or whole groups per fold."""
    from sklearn.model_selection import GroupKFold, KFold

    if groups is None:
        if n < n_splits:
            raise InputError(f"{n} training voxels cannot make {n_splits} CV folds")
        return list(KFold(n_splits, shuffle=True, random_state=random_state).split(np.zeros(n)))
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise InputError(
            f"the training voxels span {n_groups} spatial blocks, too few for {n_splits} "
            "blocked CV folds; use smaller blocks (block_mm) or fewer folds"
        )
    return list(GroupKFold(n_splits, shuffle=True, random_state=random_state).split(np.zeros(n), groups=groups))


def parse_grid(spec) -> dict:
    """A grid from a preset name ('default', 'large'), a JSON object text, or a dict."""
    if spec is None:
        return DEFAULT_GRID
    if isinstance(spec, dict):
        grid = spec
    elif spec in GRIDS:
        return GRIDS[spec]
    else:
        try:
            grid = json.loads(spec)
        except (TypeError, ValueError):
            raise InputError(
                f"grid must be one of {', '.join(GRIDS)} or a JSON object such as "
                '\'{"max_depth": [3, 6], "n_estimators": [100]}\''
            ) from None
    if not isinstance(grid, dict) or not grid:
        raise InputError("the grid must be a non-empty mapping of XGBoost parameter -> values")
    return grid


def check_grid(grid) -> dict:
    """``grid`` (see :func:`parse_grid`), checked by XGBoost itself on a few rows, each value of
    each parameter once: XGBoost ignores a parameter it does not use without a word (``depth``
    for ``max_depth``: every candidate of the search was the same model), and a value it refuses
    stopped the evaluation only once its first model was fitted.

    A parameter is one XGBoost uses when the configuration of a booster fitted with it names it
    (aliases such as ``eta`` included), or the scikit-learn interface takes it. XGBoost's own
    warning of unused parameters reaches Python only in the thread that imported it.

    Raises
    ------
    InputError
        A parameter XGBoost does not use (with the closest one it does), or a value it refuses.
    """
    grid = parse_grid(grid)
    if any(grid is preset for preset in GRIDS.values()):
        return grid
    xgboost = require("xgboost", "downstream prediction")
    candidates, _ = _candidates(grid)
    first = candidates[0]
    rows, y = np.arange(16, dtype=np.float32).reshape(8, 2), np.arange(8.0)
    wrapper = set(xgboost.XGBRegressor().get_params())
    for key, value in [(None, None)] + [(k, v) for k in first for v in {str(c[k]): c[k] for c in candidates}.values()]:
        params = {**FIXED_PARAMS, **first, **({key: value} if key else {})}
        try:
            model = xgboost.XGBRegressor(**params, n_estimators=1).fit(rows, y)
        except xgboost.core.XGBoostError as error:
            reason = str(error).strip().splitlines()[0]
            given = f"{key}={value}" if key else f"parameters {first}"
            raise InputError(f"XGBoost refuses the grid's {given}: {reason}") from None
        named = _config_names(json.loads(model.get_booster().save_config()))
        unused = [name for name in sorted(params) if name not in named | wrapper]
        if unused:
            raise InputError(
                f"XGBoost does not use the grid's parameter{'s' * (len(unused) > 1)} {', '.join(unused)}"
                f"{did_you_mean(unused[0], sorted(named | wrapper))} (it would ignore "
                f"{'them' if len(unused) > 1 else 'it'}, and every candidate would be the same model; its "
                "parameters: https://xgboost.readthedocs.io/en/stable/parameter.html)"
            )
    return grid


def _config_names(config) -> set[str]:
    """Every key of a booster's saved configuration (nested), the names of its parameters."""
    if isinstance(config, dict):
        return set(config).union(*(_config_names(v) for v in config.values()))
    if isinstance(config, list):
        return set().union(*(_config_names(v) for v in config))
    return set()


def check_cv(n_splits, n_jobs) -> tuple[int, int]:
    """``n_splits`` (at least 2 folds) and the threads ``n_jobs`` asks for, as joblib reads it:
    None or -1 every CPU, -2 all but one. scikit-learn refused 1 or 2.5 folds only once the
    evaluation had written its reconstruction table, and ``n_jobs=-1`` ran one thread."""
    n_splits = int(checked(n_splits, "n_splits", Bound(2, integer=True)))
    checked(n_jobs, "n_jobs", Bound(integer=True, none=True))
    cpus = os.cpu_count() or 1
    if n_jobs is None:
        return n_splits, cpus
    if n_jobs == 0:
        raise InputError("n_jobs must be a positive number of threads, or -1 for every CPU (-2: all but one), got 0")
    return n_splits, int(n_jobs) if n_jobs > 0 else max(1, cpus + 1 + int(n_jobs))


def _candidates(grid: dict):
    """Parameter sets without n_estimators, and the sorted n_estimators values to score."""
    grid = {k: list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v] for k, v in grid.items()}
    sizes = sorted(int(n) for n in grid.pop("n_estimators", [100]))
    if not sizes or sizes[0] < 1:
        raise InputError("n_estimators in the grid must be positive integers")
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))], sizes


def _regressor(params: dict, n_estimators: int, random_state: int):
    XGBRegressor = require("xgboost", "downstream prediction").XGBRegressor
    return XGBRegressor(**{**FIXED_PARAMS, **params}, n_estimators=n_estimators, random_state=random_state)


@renamed_kwargs(seed="random_state")
def grid_search(X, y, folds, *, grid=None, random_state: int = 0) -> tuple[dict, pd.DataFrame]:
    """Cross-validated grid search of an XGBoost regressor (mean squared error).

    Returns the best parameters (including ``n_estimators``) and a table of every candidate's
    mean CV RMSE. Equal to scikit-learn's ``GridSearchCV`` on the same folds (see the module
    docstring), ties going to the first candidate in grid order.
    """
    candidates, sizes = _candidates(parse_grid(grid))
    mse = np.zeros((len(candidates), len(sizes)))
    for c, params in enumerate(candidates):
        for train, val in folds:
            model = _regressor(params, sizes[-1], random_state).fit(X[train], y[train])
            for s, n in enumerate(sizes):
                pred = model.predict(X[val], iteration_range=(0, n))
                mse[c, s] += np.mean((pred - y[val]) ** 2) / len(folds)
    rows = [
        {**params, "n_estimators": n, "cv_rmse": float(np.sqrt(mse[c, s]))}
        for c, params in enumerate(candidates)
        for s, n in enumerate(sizes)
    ]
    table = pd.DataFrame(rows)
    best = rows[int(np.argmin(mse.ravel()))]
    return {k: v for k, v in best.items() if k != "cv_rmse"}, table


@renamed_kwargs(seed="random_state")
def fit_score(X, y, train, test, *, groups=None, grid=None, n_splits: int = 5, random_state: int = 0) -> dict:
    """Grid-search on ``train`` rows (CV folds by ``groups`` when given), refit, score ``test``.

    Returns a dict: r2, rmse (test), cv_rmse (best candidate), best_params (JSON), n_train, n_test.
    """
    from sklearn.metrics import r2_score

    X_train, y_train = X[train], y[train]
    folds = cv_folds(
        len(X_train), n_splits=n_splits, groups=None if groups is None else groups[train], random_state=random_state
    )
    best, table = grid_search(X_train, y_train, folds, grid=grid, random_state=random_state)
    model = _regressor({k: v for k, v in best.items() if k != "n_estimators"}, best["n_estimators"], random_state)
    pred = model.fit(X_train, y_train).predict(X[test])
    return {
        "r2": float(r2_score(y[test], pred)),
        "rmse": float(np.sqrt(np.mean((pred - y[test]) ** 2))),
        "cv_rmse": float(table["cv_rmse"].min()),
        "best_params": json.dumps(best, sort_keys=True),
        "n_train": len(X_train),
        "n_test": len(pred),
    }


@renamed_kwargs(seed="random_state")
def predict_targets(
    embeddings: dict,
    targets,
    splits: dict,
    *,
    xyz=None,
    block_mm: float = 16.0,
    grid=None,
    n_splits: int = 5,
    random_state: int = 0,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Score every representation x target x split scheme.

    Parameters
    ----------
    embeddings : dict name -> (voxel, component) DataArray or array
        On the same voxels as ``targets``; NaN rows are left out.
    targets : (voxel, target) DataArray
        From :func:`brainzarr.evaluate.load_targets` (NaN where excluded).
    splits : dict scheme -> (voxel,) 'train'/'test' labels
        ``{"random": ..., "blocked": ...}``; a ``blocked`` scheme makes blocked CV folds.
    xyz : (voxel, 3) array
        MNI coordinates (needed for a ``blocked`` scheme's CV folds).
    block_mm : float
        Cube edge of the blocked CV folds.
    grid : dict, optional
        XGBoost parameter grid (default :data:`DEFAULT_GRID`).
    n_splits : int
        CV folds.
    random_state : int
        Seeds the folds and XGBoost.
    n_jobs : int, optional
        Models fitted at once (threads; each XGBoost uses one). Default, or -1: every CPU; -2:
        all but one.
    progress : bool, optional
        Show a progress bar (default: on a terminal).

    Returns
    -------
    pandas.DataFrame
        One row per representation x target x split: ``representation, target, split, r2, rmse,
        cv_rmse, n_train, n_test, n_excluded, best_params, seed, block_mm``.
    """
    grid = check_grid(grid)
    target_names = [str(t) for t in np.asarray(targets["target"].values)]
    Y = np.asarray(targets.transpose("voxel", "target").values, dtype=np.float64)
    groups = None
    if "blocked" in splits:
        if xyz is None:
            raise InputError("the blocked split needs voxel coordinates (xyz) for its CV folds")
        groups = spatial_blocks(xyz, block_mm)
    tasks = []
    voxels = targets["voxel"].values if "voxel" in targets.coords else None
    for rep, emb in embeddings.items():
        X = np.asarray(getattr(emb, "values", emb), dtype=np.float32)
        if X.ndim != 2 or len(X) != len(Y):
            raise InputError(f"embedding {rep} has shape {X.shape}; expected ({len(Y)}, n_components)")
        if voxels is not None and hasattr(emb, "coords") and "voxel" in emb.coords:
            if not np.array_equal(emb["voxel"].values, voxels):  # rows are matched by position below
                raise InputError(
                    f"embedding {rep} lists the voxels in another order than the targets; read both onto "
                    "the store's voxels (load_embedding, load_targets)"
                )
        for t, name in enumerate(target_names):
            for scheme, labels in splits.items():
                tasks.append((rep, X, name, t, scheme, np.asarray(labels).astype(str)))

    def run(task):
        rep, X, name, t, scheme, labels = task
        y = Y[:, t]
        ok = np.isfinite(y) & np.isfinite(X).all(axis=1)
        train, test = np.flatnonzero(ok & (labels == "train")), np.flatnonzero(ok & (labels == "test"))
        if len(test) < 2:
            raise InputError(f"{rep} -> {name} ({scheme}): {len(test)} test voxels with data")
        rows = np.concatenate([train, test])
        Xs, ys = X[rows], y[rows]
        tr, te = np.arange(len(train)), np.arange(len(train), len(rows))
        g = groups[rows] if scheme == "blocked" else None
        scores = fit_score(Xs, ys, tr, te, groups=g, grid=grid, n_splits=n_splits, random_state=random_state)
        return {
            "representation": rep,
            "target": name,
            "split": scheme,
            **scores,
            "n_excluded": int((~ok).sum()),
            "n_buffer": int((ok & (labels == "buffer")).sum()),  # the blocked split's exclusion zone
            "seed": random_state,
            "block_mm": float(block_mm) if scheme == "blocked" else np.nan,
        }

    n_splits, workers = check_cv(n_splits, n_jobs)
    with (
        ThreadPoolExecutor(workers) as pool,
        step(len(tasks), "prediction", unit="model", progress=progress) as bar,
    ):
        futures = [pool.submit(run, task) for task in tasks]
        for future in as_completed(futures):
            future.result()  # surface the first error at once
            bar.update(1)
        results = [f.result() for f in futures]
    columns = [
        "representation",
        "target",
        "split",
        "r2",
        "rmse",
        "cv_rmse",
        "n_train",
        "n_test",
        "n_excluded",
        "n_buffer",
        "best_params",
        "seed",
        "block_mm",
    ]
    return pd.DataFrame(results, columns=columns)
