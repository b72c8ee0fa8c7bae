"""Per-gene clamping and scaling, and train/test splits of voxels.

The reference study clamps each gene at its 0.01 and 99.9 percentiles over voxels and
rescales it to [0, 1]. Exact percentiles need only the tails of each gene's distribution,
so they are computed in one streamed pass: every block of voxels contributes its smallest
and largest values per gene (:class:`TailAccumulator`), merged as the blocks arrive. Memory
is the tails' size (0.1 % of the voxels per gene), never the whole matrix.
"""

from __future__ import annotations

import math

import numpy as np

from ._deprecation import renamed_kwargs
from ._validation import SPLIT_SYNONYMS, did_you_mean
from .exceptions import InputError

__all__ = [
    "TailAccumulator",
    "clamp_scale",
    "check_percentiles",
    "random_split",
    "blocked_split",
    "spatial_blocks",
    "make_split",
    "SPLIT_SCHEMES",
    "BLOCK_MM",
    "BUFFER_MM",
    "default_block_mm",
    "default_buffer_mm",
]

SPLIT_SCHEMES = ("random", "blocked")
#: the blocked split's defaults (scripts/leak_curve.py; docs/design.md): a test voxel no longer
#: finds an exact copy of itself among the training voxels past 16 mm (the AHBA samples' spacing)
BUFFER_MM = 16.0
BLOCK_MM = 48.0


def _rank_window(n: int, q: float) -> tuple[int, float]:
    """numpy's 'linear' percentile reads sorted values at floor(q (n-1)) and the next one."""
    pos = q * (n - 1)
    lo = int(math.floor(pos))
    return lo, pos - lo


class TailAccumulator:
    """Exact low/high percentiles per column, from row blocks streamed in any order.

    Parameters
    ----------
    n_rows : int
        Total number of rows that will be added.
    percentiles : (float, float)
        Low and high percentiles in [0, 100].
    """

    def __init__(self, n_rows: int, percentiles=(0.01, 99.9)):
        q_lo, q_hi = (p / 100.0 for p in percentiles)
        if not 0 <= q_lo <= q_hi <= 1:
            raise InputError(f"percentiles must satisfy 0 <= low <= high <= 100, got {percentiles}")
        self.n_rows = int(n_rows)
        self._lo_rank, self._lo_frac = _rank_window(self.n_rows, q_lo)
        self._hi_rank, self._hi_frac = _rank_window(self.n_rows, q_hi)
        self.n_low = min(self._lo_rank + 2, self.n_rows)  # keep sorted[0 : lo+2]
        self.n_high = min(self.n_rows - self._hi_rank, self.n_rows)  # keep sorted[hi : n]
        self.low = None
        self.high = None
        self.rows_seen = 0

    def tails(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (n_low, g) smallest and (n_high, g) largest values of a block, per column."""
        n = len(block)
        lo_k, hi_k = min(self.n_low, n), min(self.n_high, n)
        by_column = np.ascontiguousarray(np.asarray(block).T)  # partition along contiguous rows
        if lo_k + hi_k >= n:
            by_column.sort(axis=1)
        else:  # one partition places both cut points
            by_column.partition([lo_k - 1, n - hi_k], axis=1)
        # copies: views would keep the whole block alive as long as the tails
        return by_column[:, :lo_k].T.copy(), by_column[:, n - hi_k :].T.copy()

    def add(self, block: np.ndarray) -> None:
        self.merge(*self.tails(np.asarray(block)), n_rows=len(block))

    def merge(self, low: np.ndarray, high: np.ndarray, n_rows: int) -> None:
        if self.low is None:
            self.low, self.high = low, high
        else:
            self.low, self.high = merge_tails([self.low, low], [self.high, high], self.n_low, self.n_high)
        self.rows_seen += int(n_rows)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The low and high percentiles per column (float64), equal to ``numpy.percentile``."""
        if self.rows_seen != self.n_rows:
            raise RuntimeError(f"saw {self.rows_seen} rows, expected {self.n_rows}")
        low = np.sort(self.low.astype(np.float64), axis=0)
        high = np.sort(self.high.astype(np.float64), axis=0)
        lo = _interp(low, self._lo_rank, self._lo_frac)
        hi = _interp(high, self._hi_rank - (self.n_rows - len(high)), self._hi_frac)
        return lo, hi


def merge_tails(lows, highs, n_low: int, n_high: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack tails of row blocks and keep, per column, the ``n_low`` smallest of ``lows`` and the
    ``n_high`` largest of ``highs``."""
    return _smallest(np.concatenate(lows), n_low), -_smallest(-np.concatenate(highs), n_high)


def _smallest(a: np.ndarray, m: int) -> np.ndarray:
    if len(a) <= m:
        return a
    return np.partition(a, m - 1, axis=0)[:m].copy()  # not a view of the whole partition


def _interp(sorted_vals, rank, frac):
    below = sorted_vals[rank]
    if frac == 0 or rank + 1 >= len(sorted_vals):
        return below
    return below + frac * (sorted_vals[rank + 1] - below)


def clamp_scale(block: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Clip each column to [low, high] and map it linearly onto [0, 1] (constant columns -> 0)."""
    low = np.asarray(low, dtype=np.float32)
    span = np.asarray(high, dtype=np.float32) - low
    out = np.clip(block, low, low + span) - low
    np.divide(out, span, out=out, where=span > 0)
    out[:, span <= 0] = 0.0
    return out.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------- splits
@renamed_kwargs(seed="random_state")
def random_split(n: int, *, test_fraction: float = 0.2, random_state: int = 0) -> np.ndarray:
    """'train'/'test' labels: a seeded random ``test_fraction`` of the rows is test (the study's)."""
    check_fraction(test_fraction)
    n_test = int(round(test_fraction * n))
    labels = np.full(n, "train", dtype="<U5")
    labels[np.random.default_rng(random_state).permutation(n)[:n_test]] = "test"
    return labels


def spatial_blocks(xyz, block_mm: float) -> np.ndarray:
    """Index of the ``block_mm`` cube (on a grid anchored at MNI 0) holding each point."""
    if block_mm <= 0:
        raise InputError("block size must be positive")
    cube = np.floor(np.asarray(xyz, dtype=float) / block_mm).astype(np.int64)
    _, block = np.unique(cube, axis=0, return_inverse=True)
    return block.reshape(-1)


@renamed_kwargs(seed="random_state")
def blocked_split(
    xyz, *, block_mm: float = 16.0, test_fraction: float = 0.2, random_state: int = 0, buffer_mm: float = 0.0
) -> np.ndarray:
    """'train'/'test'/'buffer' labels with whole cubes of ``block_mm`` in one set.

    Cubes are visited in a seeded random order and go to test until it holds at least
    ``test_fraction`` of the voxels, so no test voxel has a training voxel in its cube. Voxels
    outside the test cubes but within ``buffer_mm`` (centre to centre) of a test voxel are
    ``'buffer'``: in neither set, as spatial cross-validation's exclusion zone, since a test
    voxel's neighbour across a cube face is otherwise a near-copy in training.
    """
    check_fraction(test_fraction)
    if buffer_mm < 0:
        raise InputError(f"buffer_mm must be >= 0, got {buffer_mm}")
    xyz = np.asarray(xyz, dtype=float)
    block = spatial_blocks(xyz, block_mm)
    counts = np.bincount(block)
    order = np.random.default_rng(random_state).permutation(len(counts))
    target = test_fraction * len(block)
    cumulative = np.cumsum(counts[order])
    n_test_blocks = int(np.searchsorted(cumulative, target)) + 1 if target > 0 else 0
    test_blocks = np.zeros(len(counts), dtype=bool)
    test_blocks[order[:n_test_blocks]] = True
    labels = np.where(test_blocks[block], "test", "train").astype("<U6")
    test = labels == "test"
    if buffer_mm > 0 and test.any() and (~test).any():
        from scipy.spatial import cKDTree

        dist, _ = cKDTree(xyz[test]).query(xyz[~test], k=1, distance_upper_bound=buffer_mm * (1 + 1e-9))
        near = np.flatnonzero(~test)[np.isfinite(dist)]
        labels[near] = "buffer"
    return labels


def default_buffer_mm(resolution_mm: float) -> float:
    """The blocked split's buffer at a grid spacing: :data:`BUFFER_MM`, and at least one voxel."""
    return float(max(BUFFER_MM, resolution_mm))


def default_block_mm(resolution_mm: float) -> float:
    """The blocked split's cube edge at a grid spacing: :data:`BLOCK_MM`, and at least 6 voxels
    (so the buffer around a test cube stays thinner than the cube)."""
    return float(max(BLOCK_MM, 6 * resolution_mm))


@renamed_kwargs(seed="random_state")
def make_split(scheme: str, xyz, *, test_fraction=0.2, random_state=0, block_mm=16.0, buffer_mm=0.0) -> np.ndarray:
    """Dispatch to :func:`random_split` or :func:`blocked_split`."""
    if scheme == "random":
        return random_split(len(xyz), test_fraction=test_fraction, random_state=random_state)
    if scheme == "blocked":
        return blocked_split(
            xyz, block_mm=block_mm, test_fraction=test_fraction, random_state=random_state, buffer_mm=buffer_mm
        )
    raise InputError(
        f"unknown split {scheme!r}; choose from {', '.join(SPLIT_SCHEMES)}"
        f"{did_you_mean(scheme, SPLIT_SCHEMES, SPLIT_SYNONYMS)}"
    )


def check_percentiles(percentiles) -> tuple[float, float]:
    """``(low, high)`` clamp percentiles as floats with 0 <= low < high <= 100. Equal ones clamped
    every gene to one value, a store of zeros; others stopped in numpy or in unpacking."""
    try:
        low, high = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise InputError(f"clamp percentiles must be two numbers (low, high), got {percentiles!r}") from None
    if not 0 <= low < high <= 100:
        raise InputError(f"clamp percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
    return low, high


def check_fraction(f):
    if not 0 < f < 1:
        raise InputError(f"test fraction must be between 0 and 1, got {f}")
