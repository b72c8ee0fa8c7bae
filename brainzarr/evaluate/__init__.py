"""Evaluation of representations the way the reference study does, with honest splits.

* :mod:`.reconstruction` - held-out reconstruction RMSE tables (method x dim x resolution x split);
* :mod:`.targets` - target maps (PET, MRI...) and external embeddings from NIfTI on any MNI grid;
* :mod:`.prediction` - XGBoost from each 2-D embedding to each target: grid search with k-fold
  CV on training voxels, R² and RMSE on test voxels, under the random and the blocked split;
* :mod:`.stats` - one-way ANOVA and Tukey HSD across methods;
* :mod:`.figures` and :mod:`.report` - PNG figures and a self-contained HTML report;
* :mod:`.synthetic_targets` - target maps made from the synthetic source's truth.

>>> from brainzarr.evaluate import run_evaluation, write_report  # doctest: +SKIP
>>> result = run_evaluation("store/s8.zarr", "pet_maps/", "eval/")  # doctest: +SKIP
>>> write_report("store/s8.zarr", "eval/")  # doctest: +SKIP
"""

from .prediction import DEFAULT_GRID, LARGE_GRID, fit_score, grid_search, predict_targets
from .reconstruction import reconstruction_frame, reconstruction_histogram, reconstruction_table, streamed_rmse
from .report import write_report
from .reproduce import reproduce_study
from .results import find_representations
from .run import EvaluationResult, load_evaluation, run_evaluation, summary_table
from .stats import anova_tukey
from .synthetic_targets import SYNTHETIC_TARGETS, write_synthetic_targets
from .targets import load_embedding, load_targets

__all__ = [
    "run_evaluation",
    "write_report",
    "reproduce_study",
    "EvaluationResult",
    "load_evaluation",
    "load_targets",
    "load_embedding",
    "predict_targets",
    "fit_score",
    "grid_search",
    "DEFAULT_GRID",
    "LARGE_GRID",
    "reconstruction_table",
    "reconstruction_frame",
    "reconstruction_histogram",
    "streamed_rmse",
    "anova_tukey",
    "summary_table",
    "find_representations",
    "write_synthetic_targets",
    "SYNTHETIC_TARGETS",
]
