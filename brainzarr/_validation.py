"""Checks of parameters that several layers take (a job, an estimator): one message for each."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .exceptions import InputError

__all__ = [
    "whole_number",
    "Bound",
    "checked",
    "check_params",
    "hidden_widths",
    "did_you_mean",
    "non_finite_input",
    "SEED",
    "SPLIT_SYNONYMS",
]

#: why ``random_state`` must be a whole number, for its messages
SEED = " (a seed: brainzarr records it so that the run can be repeated)"


def whole_number(value, name: str, *, hint: str = "") -> int:
    """``value`` as an int when it is a whole number (``8``, ``np.int64(8)``, ``8.0``); else
    :class:`~brainzarr.exceptions.InputError` naming ``name`` and what was given.

    ``int()`` took ``2.5`` as 2, ``True`` as 1 and ``"8"`` as 8, and said ``int() argument must
    be ... not 'NoneType'`` of None.
    """
    integral = isinstance(value, numbers.Integral)
    whole = integral or (isinstance(value, numbers.Real) and np.isfinite(value) and float(value).is_integer())
    if whole and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise InputError(f"{name} must be a whole number, got {value!r}{hint}")


@dataclass(frozen=True)
class Bound:
    """What a numeric parameter takes, as scikit-learn's ``Interval`` says it: a whole number
    (``integer``) or any finite real, from ``low`` (above it when ``low_open``) to ``high`` (below
    it when ``high_open``); besides, ``None`` when ``none`` and the strings of ``words``."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    low_open: bool = False
    high_open: bool = False
    none: bool = False
    words: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            what = f"in {'(['[not self.low_open]}{self.low:g}, {self.high:g}{')]'[not self.high_open]}"
        elif self.low is not None:
            what = f"{'above' if self.low_open else 'at least'} {self.low:g}"
        elif self.high is not None:
            what = f"{'below' if self.high_open else 'at most'} {self.high:g}"
        else:
            what = "a number"
        if self.integer:
            what += " (a whole number)" if what != "a number" else ""
            what = "a whole number" if what == "a number" else what
        parts = [what, *(repr(w) for w in self.words), *["None"] * self.none]
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else what

    def holds(self, value) -> bool:
        if value is None:
            return self.none
        if isinstance(value, str):
            return value in self.words
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value):
            return False
        if self.integer and not (isinstance(value, numbers.Integral) or float(value).is_integer()):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def checked(value, name: str, bound: Bound):
    """``value``, when ``bound`` holds it; else :class:`~brainzarr.exceptions.InputError` naming
    ``name``, what it takes and what it got."""
    if not bound.holds(value):
        raise InputError(f"{name} must be {bound.describe()}, got {value!r}")
    return value


def check_params(owner, bounds: dict) -> None:
    """Refuse the first parameter of ``owner`` (an estimator) outside its :class:`Bound`, naming
    it, what it takes and what it got: ``int()`` and numpy took ``2.5`` iterations as 2, ``True``
    epochs as 1 and a negative count as none, or stopped with their own messages."""
    for name, bound in bounds.items():
        checked(getattr(owner, name), name, bound)


def hidden_widths(hidden) -> list[int]:
    """``hidden`` as a list of layer widths: one width alone is one layer, as scikit-learn's
    ``hidden_layer_sizes`` takes it; each a whole number of units, at least one (``int()`` took
    ``256.7`` as 256)."""
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if isinstance(hidden, Iterable) and not isinstance(hidden, (str, bytes)):
        hidden = tuple(hidden)
    if not isinstance(hidden, tuple) or not all(map(Bound(1, integer=True).holds, hidden)):
        raise InputError(
            f"hidden must be layer widths, whole numbers of at least 1 such as (500, 250, 125), got {hidden!r}"
        )
    return [int(h) for h in hidden]


#: what papers call the split schemes, for :func:`did_you_mean`
SPLIT_SYNONYMS = {"spatial": "blocked (the spatially blocked split)", "block": "blocked"}


def did_you_mean(value, choices, synonyms: dict | None = None) -> str:
    """``"; did you mean idw?"`` for a value close to one of ``choices`` (case aside) or one of
    ``synonyms`` (``{"spatial": "blocked (...)"}``), else ``""``: the tail of a message that lists
    the choices."""
    meant = (synonyms or {}).get(str(value).casefold())
    if meant is not None:
        return f"; did you mean {meant}?"
    by_folded = {str(c).casefold(): str(c) for c in choices}
    close = difflib.get_close_matches(str(value).casefold(), list(by_folded), n=1, cutoff=0.6)
    return f"; did you mean {by_folded[close[0]]}?" if close else ""


def non_finite_input(detail: str = "") -> InputError:
    """The error of a fit that met NaN or infinite values in a lazy X (NumPy input is checked
    up front by scikit-learn's validation). Models find them where a pass already looks at
    every value (PCA's column sums, NMF's block minimum, the auto-encoder's loss), so a pass
    over a store costs nothing more."""
    return InputError(
        f"X holds NaN or infinite values{detail}: a DataArray's .where(...) without drop=True keeps "
        "the rows it masks as NaN (ds.brain.expression(where=...) keeps only the voxels where it is true)"
    )
