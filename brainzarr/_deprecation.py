"""Old keyword names that keep working for one release, with a FutureWarning."""

from __future__ import annotations

import functools
import warnings

from .exceptions import InputTypeError

__all__ = ["renamed_kwargs"]

#: what a dropped keyword's warning says instead of a new name
_DROPPED = {"progress": "progress bars follow brainzarr.set_options(progress=...)"}


def renamed_kwargs(**renames):
    """Decorate a function (or ``__init__``) so ``old=`` keywords still work as ``new=``.

    ``renamed_kwargs(seed="random_state", progress=None)``: ``seed=`` is passed on as
    ``random_state=``; ``progress=`` (mapped to None) is dropped. Both warn once per call with a
    FutureWarning. The signature seen by ``inspect`` (and scikit-learn's ``get_params``) is the
    function's own, without the old names.
    """

    def decorate(fn):
        where = fn.__qualname__.replace(".__init__", "")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                value = kwargs.pop(old)
                if new is None:
                    hint = _DROPPED.get(old, "it has no effect")
                    warnings.warn(f"{where}({old}=...) is deprecated: {hint}", FutureWarning, stacklevel=2)
                    continue
                if new in kwargs:
                    raise InputTypeError(f"{where}() got both {old}= (its old name) and {new}=")
                warnings.warn(
                    f"{where}({old}=...) is renamed {new}=...; the old name stops working in the next release",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = value
            return fn(*args, **kwargs)

        return wrapper

    return decorate
