"""What every torch-based part shares: importing torch with an install hint, the device,
early stopping and atomic checkpoint files (loaded back with ``weights_only=True``)."""

from __future__ import annotations

import contextlib
import math

from ._atomic import atomic_file
from ._optional import require
from ._validation import did_you_mean
from .exceptions import InputError

__all__ = [
    "require_torch",
    "resolve_device",
    "seeded",
    "float_tensor",
    "EarlyStopping",
    "save_atomic",
    "load_weights_only",
]


def require_torch(extra: str = "models"):
    """The torch module, or a clear error naming the extra to install (``models``, ``inr``)."""
    return require("torch", "this part of brainzarr", extra)


def float_tensor(values):
    """``values`` as a float32 CPU tensor, sharing its memory where it can: a read-only array (a
    DataFrame's values, a read-only memmap) is copied, as torch may not share memory it cannot
    write (it warns and would allow writes)."""
    import numpy as np

    array = np.ascontiguousarray(values, dtype=np.float32)
    return require_torch().from_numpy(array if array.flags.writeable else array.copy())


#: the torch devices brainzarr takes by name (and "cuda:N")
DEVICES = ("auto", "cpu", "cuda")
#: what users may call a torch device -> the one brainzarr takes
DEVICE_SYNONYMS = {"gpu": "cuda", "nvidia": "cuda"}


@contextlib.contextmanager
def seeded(random_state):
    """torch's (CPU) random generator seeded with ``random_state`` inside the block and given
    back its state after it: a network's initial weights follow the seed without reseeding the
    caller's own torch code (``torch.manual_seed`` alone did)."""
    torch = require_torch()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(random_state))
        yield


def resolve_device(device="auto"):
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N', as a torch.device.

    Raises
    ------
    InputError
        An unknown device, or CUDA asked for where torch sees none.
    """
    torch = require_torch()
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        hint = did_you_mean(device, DEVICES, DEVICE_SYNONYMS)
        raise InputError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'{hint}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device={device!r} but CUDA is not available to torch {torch.__version__} "
                "('auto' takes CUDA where there is one)",
                options={"device": "cpu"},
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return dev


class EarlyStopping:
    """Track a validation loss; ``stop`` once it has not improved for ``patience`` epochs.

    ``update(loss)`` returns True when the loss is a new best (the caller keeps that state).
    The counters are plain numbers, so they go into a checkpoint as they are
    (:meth:`state_dict` / :meth:`load_state_dict`).
    """

    def __init__(self, patience: int):
        if int(patience) < 1:
            raise InputError(f"patience must be at least 1, got {patience}")
        self.patience = int(patience)
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.epoch = 0

    @property
    def stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def update(self, loss: float) -> bool:
        self.epoch += 1
        if loss < self.best:
            self.best, self.best_epoch, self.bad_epochs = float(loss), self.epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.epoch = int(state["epoch"])


def save_atomic(obj, path) -> None:
    """``torch.save`` that leaves either the old file or the new one, never half of one."""
    torch = require_torch()
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def load_weights_only(path, map_location="cpu"):
    """``torch.load(path, weights_only=True)``: tensors and plain containers, no pickled code."""
    return require_torch().load(path, map_location=map_location, weights_only=True)
