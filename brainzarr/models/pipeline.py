"""Deprecated: the store-aware fitting moved to :mod:`brainzarr.models.store_fitting`
(and is re-exported from :mod:`brainzarr`). This module goes in the next release."""

import warnings

from .store_fitting import *  # noqa: F403
from .store_fitting import __all__  # noqa: F401

warnings.warn(
    "brainzarr.models.pipeline is renamed brainzarr.models.store_fitting (fit_store, load_model and "
    "rmse_table are also in brainzarr); the old name goes in the next release",
    FutureWarning,
    stacklevel=2,
)
