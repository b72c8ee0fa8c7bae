"""One call that evaluates a store: reconstruction tables and downstream prediction.

Used by ``brainzarr evaluate`` and by ``brainzarr demo``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._atomic import refuse_foreign_outputs, write_file, write_text
from .._deprecation import renamed_kwargs
from .._location import location, user_path
from .._optional import check_installed
from .._text import text_head
from .._validation import SEED, SPLIT_SYNONYMS, did_you_mean, whole_number
from .._version import generated_by, made_by_brainzarr
from ..exceptions import InputError
from ..models.store_fitting import selected_dims, selected_methods
from ..nifti import INTERPOLATIONS
from ..preprocess import SPLIT_SCHEMES
from ..store import check_schema, list_groups, open_store, refuse_output_in_a_store, results_by_split, write_group
from .prediction import check_cv, check_grid, parse_grid, predict_targets
from .reconstruction import reconstruction_frame, reconstruction_table, save_reconstruction_table, to_markdown
from .results import check_fitted, find_representations, read_embedding, split_labels
from .stats import anova_tukey
from .targets import load_embedding, load_targets

__all__ = ["EvaluationResult", "run_evaluation", "split_schemes", "summary_table", "load_evaluation"]


@dataclass
class EvaluationResult:
    """What :func:`run_evaluation` computed and where it wrote it."""

    prediction: pd.DataFrame
    reconstruction: pd.DataFrame
    anova: pd.DataFrame
    tukey: pd.DataFrame
    summary: pd.DataFrame
    files: dict = field(default_factory=dict)
    seconds: float = 0.0
    target_maps: xr.DataArray | None = None

    def describe(self) -> str:
        """The printed summary: mean test R² per representation, random and blocked side by side."""
        lines = []
        if len(self.reconstruction):
            test = self.reconstruction.pivot_table(index=["method", "dim"], columns="split", values="test_rmse")
            lines += [
                "Reconstruction: test RMSE (rows: method, dim; columns: split scheme the model was fitted under)",
                test.to_string(float_format=lambda v: f"{v:.4f}"),
                "",
            ]
        if len(self.summary):
            lines += [
                (
                    "Prediction: mean test R² over targets (XGBoost on the embedding; random = the study's "
                    "random voxel split, blocked = whole spatial blocks held out)"
                ),
                self.summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
                "",
            ]
        if len(self.prediction) and self.anova.empty:
            lines.append("ANOVA across representations: needs at least two representations and two targets")
        for row in self.anova.itertuples(index=False):
            test = f"ANOVA across representations ({row.split} split): F({row.df_between}, {row.df_within})"
            if np.isfinite(row.F):
                lines.append(f"{test} = {row.F:.2f}, p = {row.p:.3g}")
            else:
                lines.append(
                    f"{test} {'= inf' if row.F > 0 else 'undefined'}: each representation's R² is the same on "
                    "every target, so there is no spread to test against"
                )
        if self.files:
            lines.append("wrote:")
        for name, path in self.files.items():
            lines.append(f"  {path}  ({_FILE_LABELS.get(name, name)})")
        return "\n".join(lines)


#: what each file of :attr:`EvaluationResult.files` holds, as the printed summary says it
_FILE_LABELS = {
    "csv": "reconstruction RMSE of each method and dim",
    "markdown": "the same table in Markdown",
    "prediction": "R² and RMSE of each representation, target and split",
    "summary": "mean and SD of R² and RMSE per representation and split",
    "anova": "one-way ANOVA across representations",
    "tukey": "Tukey's pairwise comparisons",
    "record": "the settings and inputs of this evaluation",
}


def split_schemes(split: str) -> tuple[str, ...]:
    """'random', 'blocked' or 'both' -> the schemes to report."""
    if split == "both":
        return SPLIT_SCHEMES
    if split not in SPLIT_SCHEMES:
        raise InputError(
            f"split must be 'random', 'blocked' or 'both', got {split!r}"
            f"{did_you_mean(split, ('random', 'blocked', 'both'), SPLIT_SYNONYMS)}"
        )
    return (split,)


def summary_table(prediction: pd.DataFrame) -> pd.DataFrame:
    """Mean (and sd) of test R² and RMSE over targets, one row per representation, one column per
    split scheme."""
    if prediction.empty:
        return pd.DataFrame()
    g = prediction.groupby(["representation", "split"])
    stats = pd.DataFrame({"r2_mean": g["r2"].mean(), "r2_sd": g["r2"].std(ddof=1), "rmse_mean": g["rmse"].mean()})
    wide = stats.unstack("split")
    wide.columns = [f"{metric}_{split}" for metric, split in wide.columns]
    order = [f"{m}_{s}" for m in ("r2_mean", "r2_sd", "rmse_mean") for s in SPLIT_SCHEMES if f"{m}_{s}" in wide]
    return wide[order].reset_index()


def _embeddings(store, ds, methods, dims, embeddings, interpolation="linear"):
    reps, meta = {}, {}
    if methods is None or len(methods):
        # a method fitted on both splits: the embedding of the store's own split (the study's
        # random one, usually) predicts under every scheme, as the study's did
        default = ds.attrs.get("provenance", {}).get("split", {}).get("scheme", "random")
        found = sorted(find_representations(store, methods=methods, dims=dims), key=lambda r: r.split_scheme != default)
        check_fitted(store, methods, found, dims)
        for rep in found:
            if rep.name in reps:
                continue
            reps[rep.name] = read_embedding(store, rep.group, ds)
            meta[rep.name] = {
                "method": rep.method,
                "dim": rep.dim,
                "fitted_split": rep.split_scheme or "unknown",
                "source": f"{store}/{rep.group}",
            }
    for name, files in (embeddings or {}).items():
        if name in reps:
            raise InputError(f"embedding name {name} clashes with a store representation; choose another")
        emb = load_embedding(files, ds, name=name, interpolation=interpolation)
        reps[name] = emb
        meta[name] = {
            "method": "external",
            "dim": int(emb.sizes["component"]),
            "fitted_split": "external",
            "source": emb.attrs.get("source", name),
        }
    return reps, meta


#: the files an evaluation writes into its output folder
EVALUATION_FILES = (
    "reconstruction.csv",
    "reconstruction.md",
    "prediction.csv",
    "prediction_summary.csv",
    "prediction_summary.md",
    "anova.csv",
    "tukey.csv",
    "evaluation.json",
)


#: how each table an evaluation writes begins (an evaluation stopped before its evaluation.json
#: is known by them)
_TABLE_HEADS = {
    "reconstruction.csv": "method,dim,",
    "reconstruction.md": "| method | dim |",
    "prediction.csv": "representation,method,dim,",
    "prediction_summary.csv": "representation,r2_mean",
    "prediction_summary.md": "| representation |",
    "anova.csv": "split,F,p,",
    "tukey.csv": "split,group_a,group_b,",
}


def evaluation_record(folder) -> dict | None:
    """The ``evaluation.json`` that brainzarr wrote in ``folder``, or None."""
    try:
        record = json.loads((user_path(folder) / "evaluation.json").read_text())
    except (OSError, ValueError):
        return None
    legacy = isinstance(record, dict) and {"store", "splits", "targets"} <= set(record)  # before GeneratedBy
    return record if made_by_brainzarr(record) or legacy else None


def is_evaluation_folder(folder) -> bool:
    """Whether ``folder`` holds an evaluation that brainzarr wrote: its ``evaluation.json``, or,
    for one stopped before it wrote that, tables that all begin as brainzarr's do."""
    if evaluation_record(folder) is not None:
        return True
    folder = user_path(folder)
    heads = {name: head for name, head in _TABLE_HEADS.items() if (folder / name).is_file()}
    return bool(heads) and all(text_head(folder / name, len(head)) == head for name, head in heads.items())


@renamed_kwargs(seed="random_state")
def run_evaluation(
    store,
    targets=None,
    out_dir=None,
    methods=None,
    dims=(2,),
    split: str = "both",
    *,
    embeddings: dict | None = None,
    grid=None,
    n_splits: int = 5,
    block_mm: float | None = None,
    random_state: int = 0,
    n_jobs: int | None = None,
    save_to_store: bool = True,
    progress: bool | None = None,
    interpolation: str = "linear",
    embedding_interpolation: str = "linear",
) -> EvaluationResult:
    """Evaluate a store's representations (and external embeddings).

    Parameters
    ----------
    store : str or Path
        A brainzarr store, with fitted representations under ``representations/``.
    targets : directory, files, DataArray or dict, optional
        Target maps (NIfTI in MNI space, or a DataArray on the store's voxels); see
        :func:`brainzarr.evaluate.load_targets`. Without targets only the reconstruction table
        is made.
    out_dir : str or Path, optional
        Where ``prediction.csv``, ``prediction_summary.csv``, ``anova.csv``, ``tukey.csv``,
        ``reconstruction.csv``/``.md`` and ``evaluation.json`` go.
    methods : str or list of str, optional
        Store representations to evaluate (default: all; ``[]`` for none, e.g. only external ones).
        A method named that the store holds no fit of (at ``dims``, with targets) is refused.
    dims : tuple of int or None
        Embedding dims used for prediction (default 2-D, as the study; None: all).
    split : {"random", "blocked", "both"}
        Split schemes to report (the store holds both as ``split_random`` / ``split_blocked``).
    embeddings : dict name -> NIfTI file(s) or (voxel, component) DataArray, optional
        External embeddings, e.g. ``{"mine": ["c1.nii.gz", "c2.nii.gz"]}``.
    grid : dict or str, optional
        XGBoost grid (see :mod:`brainzarr.evaluate.prediction`); 'default' or 'large' or a dict.
    n_splits : int
        CV folds within the training voxels.
    block_mm : float, optional
        Cube edge of the blocked CV folds; default: the store's blocked split's.
    random_state : int
        Seeds the CV folds and XGBoost (recorded as ``seed``).
    n_jobs : int, optional
        Models fitted at once (default, or -1: every CPU; -2: all but one).
    save_to_store : bool
        Also write ``evaluation/reconstruction``, ``evaluation/prediction`` and
        ``evaluation/targets`` into the store (the report reads them).
    progress : bool, optional
        Progress bars.
    interpolation : {"linear", "nearest", "continuous", "mean"}
        How target maps are resampled onto the store's grid (see
        :func:`brainzarr.evaluate.load_targets`); "mean" averages a map finer than the store
        over each voxel.
    embedding_interpolation : {"linear", "nearest", "continuous", "mean"}
        How external embeddings given as NIfTI are read onto the store's grid (see
        :func:`brainzarr.evaluate.load_embedding`): linear (default) gives an embedding exported
        from the store back unchanged; "mean" averages one made on a finer grid over each voxel.
    """
    for option, value in (("interpolation", interpolation), ("embedding_interpolation", embedding_interpolation)):
        if value not in INTERPOLATIONS:
            raise InputError(
                f"{option} must be one of {', '.join(INTERPOLATIONS)}, got {value!r}"
                f"{did_you_mean(value, INTERPOLATIONS)}"
            )
    methods, dims = selected_methods(methods), selected_dims(dims)
    if embeddings and targets is None:
        raise InputError("an external embedding is only used to predict target maps: give the targets too")
    random_state = whole_number(random_state, "random_state", hint=SEED)
    start = time.perf_counter()
    store = location(store)
    attrs = check_schema(store)
    ds = open_store(store)
    if methods is not None:
        check_fitted(store, methods, find_representations(store, methods=methods, require=None))
    schemes = split_schemes(split)
    if block_mm is None:
        block_mm = float(attrs.get("provenance", {}).get("split", {}).get("block_mm") or 16.0)
    grid = parse_grid(grid)
    out = user_path(out_dir) if out_dir is not None else None
    if out is not None:
        refuse_output_in_a_store(out)
        refuse_foreign_outputs(out, EVALUATION_FILES, ours=is_evaluation_folder(out), job="the evaluation")
    target_maps = None
    if targets is not None:  # what cannot be used is refused before anything is written
        check_installed("xgboost", "downstream prediction")
        check_grid(grid)
        check_cv(n_splits, n_jobs)
        reps, meta = _embeddings(store, ds, methods, dims, embeddings, embedding_interpolation)
        if not reps:
            held = "; ".join(results_by_split(list_groups(store))) or "no fitted representation"
            at = "at any dim" if dims is None else f"at dim {', '.join(map(str, dims))}"
            raise InputError(
                f"{store} holds no embedding of {', '.join(methods) if methods else 'any method'} {at}, and no "
                f"external embedding was given; it holds {held} (fit representations first: `brainzarr fit`)"
            )
        target_maps = load_targets(targets, ds, interpolation=interpolation)
    files = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    table = reconstruction_table(store, methods=methods)
    recon = reconstruction_frame(table)
    written = save_reconstruction_table(store if save_to_store else None, table, out) if table.size else {}
    files.update({k: v for k, v in written.items() if k in ("csv", "markdown")})

    prediction = pd.DataFrame(columns=["representation", "target", "split", "r2", "rmse"])
    if targets is not None:
        splits = {s: split_labels(ds, s) for s in schemes}
        xyz = np.column_stack([ds[c].values for c in "xyz"])
        prediction = predict_targets(
            reps,
            target_maps,
            splits,
            xyz=xyz,
            block_mm=block_mm,
            grid=grid,
            n_splits=n_splits,
            random_state=random_state,
            n_jobs=n_jobs,
            progress=progress,
        )
        info = pd.DataFrame.from_dict(meta, orient="index").rename_axis("representation").reset_index()
        prediction = prediction.merge(info, on="representation", how="left")
        first = ["representation", "method", "dim", "fitted_split", "target", "split", "r2", "rmse"]
        prediction = prediction[first + [c for c in prediction.columns if c not in first]]
        if save_to_store:
            _save_prediction(store, prediction, target_maps, grid)
    summary = summary_table(prediction)
    anova, tukey = anova_tukey(prediction) if len(prediction) else (pd.DataFrame(), pd.DataFrame())
    if out is not None:
        if len(prediction):
            for name, frame in (
                ("prediction", prediction),
                ("prediction_summary", summary),
                ("anova", anova),
                ("tukey", tukey),
            ):
                write_file(out / f"{name}.csv", lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
            write_text(out / "prediction_summary.md", to_markdown(summary, ".3f") + "\n")
            files.update(
                prediction=out / "prediction.csv",
                summary=out / "prediction_summary.csv",
                anova=out / "anova.csv",
                tukey=out / "tukey.csv",
            )
        record = {
            "GeneratedBy": generated_by(),
            "store": str(store),
            "splits": list(schemes),
            "block_mm": block_mm,
            "seed": random_state,
            "n_splits": n_splits,
            "grid": grid,
            "targets": None if targets is None else _described(targets),
            "interpolation": None if targets is None else interpolation,
            "external_embeddings": _described(embeddings or {}),
            "embedding_interpolation": embedding_interpolation if embeddings else None,
            "seconds": round(time.perf_counter() - start, 2),
        }
        write_text(out / "evaluation.json", json.dumps(record, indent=1, default=str) + "\n")
        files["record"] = out / "evaluation.json"
    return EvaluationResult(prediction, recon, anova, tukey, summary, files, time.perf_counter() - start, target_maps)


def _described(spec):
    """A targets or embeddings argument as evaluation.json records it: paths as they are, an image
    or array given in memory by its kind (``Nifti1Image``), not its many-line repr."""
    if isinstance(spec, dict):
        return {str(name): _described(value) for name, value in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_described(value) for value in spec]
    if isinstance(spec, (str, Path)):
        return str(spec)
    if isinstance(spec, xr.DataArray) and "source" in spec.coords and spec["source"].ndim == 1:
        sources = [str(s) for s in spec["source"].values]  # maps from load_targets: their files
        return sorted(set(sources), key=sources.index)
    return type(spec).__name__


def _save_prediction(store, prediction: pd.DataFrame, targets: xr.DataArray, grid: dict) -> None:
    """Prediction results as ``evaluation/prediction`` (representation, target, split) and the target
    maps as ``evaluation/targets (voxel, target)`` in the store."""
    indexed = prediction.set_index(["representation", "target", "split"])
    ds = xr.Dataset(
        {name: indexed[name].to_xarray() for name in ("r2", "rmse", "cv_rmse", "n_train", "n_test", "n_excluded")}
    )
    ds = ds.assign_attrs(
        random_state=int(prediction["seed"].iloc[0]),
        grid=json.dumps(grid),
        best_params=json.dumps(dict(zip(map("|".join, indexed.index), indexed["best_params"]))),
        representations=json.dumps(
            prediction.drop_duplicates("representation")
            .set_index("representation")[["method", "dim", "fitted_split"]]
            .astype(str)
            .to_dict(orient="index")
        ),
    )
    write_group(store, "evaluation/prediction", ds, overwrite=True)
    write_group(store, "evaluation/targets", targets.to_dataset(name="target_map"), overwrite=True)


def saved_representations(store) -> list[str]:
    """The representations of the evaluation saved in ``store`` (the one the report shows)."""
    from ..store import read_group

    if "evaluation/prediction" not in list_groups(store, prefix="evaluation"):
        return []
    return list(_representations(read_group(store, "evaluation/prediction")))


def _representations(prediction: xr.Dataset) -> dict:
    """name -> {method, dim, fitted_split} of a saved prediction table."""
    return json.loads(prediction.attrs.get("representations", "{}"))


def load_evaluation(store) -> tuple[pd.DataFrame, xr.DataArray | None]:
    """The prediction table and target maps saved in a store by :func:`run_evaluation` (or empty/None)."""
    from ..store import read_group

    groups = set(list_groups(store, prefix="evaluation"))
    if "evaluation/prediction" not in groups:
        return pd.DataFrame(), None
    res = read_group(store, "evaluation/prediction").load()
    meta = _representations(res)
    frame = (
        res[["r2", "rmse", "cv_rmse", "n_train", "n_test", "n_excluded"]]
        .to_dataframe()
        .dropna(subset=["r2"])
        .reset_index()
    )
    frame["method"] = frame["representation"].map(lambda r: meta.get(r, {}).get("method"))
    frame["dim"] = frame["representation"].map(lambda r: meta.get(r, {}).get("dim"))
    frame["fitted_split"] = frame["representation"].map(lambda r: meta.get(r, {}).get("fitted_split"))
    targets = None
    if "evaluation/targets" in groups:
        targets = read_group(store, "evaluation/targets")["target_map"].load()
    return frame, targets
