"""The reference study's deep auto-encoder (PyTorch), trained from the store out-of-core.

Architecture (Ruffle et al. 2024, its public notebook): an encoder
``genes -> 500 -> 250 -> 125 -> k`` where every layer is Linear -> BatchNorm1d -> ELU, a
mirrored decoder ``k -> 125 -> 250 -> 500`` (same layers) and an output layer Linear ->
sigmoid back to the genes (the data are scaled to [0, 1]). Adam (lr 1e-3), batches of 128,
loss = mean squared error + ``weight_decay`` x the mean square of all non-bias weights (applied
as its exact gradient, Adam's L2 ``weight_decay`` on those weights), early stopping on a
seeded validation part of the training rows. Every size is a parameter.

Data. ``fit`` takes the training rows (NumPy, dask or DataArray). When they fit in memory
(the GPU's when training on CUDA, else a quarter of the host's available memory;
``in_memory`` forces either way) they are read once and batches are drawn there
(:class:`~.loaders.MemoryLoader`); otherwise chunk-shuffled batches are streamed from the
store with background prefetch (:class:`~.loaders.StreamingLoader`). The validation rows
(at most :data:`MAX_VAL_BYTES`, sub-sampled beyond) are held in memory either way.

Reproducibility. The initial weights come from ``random_state``; epoch ``e``'s batch order
from ``(random_state, e)``; the validation rows from ``random_state``. On CPU training is
deterministic (same seed, same data, same thread count -> same weights). On CUDA it runs in
mixed precision (bfloat16 where supported, else float16 with loss scaling) and is not
bit-reproducible.

Checkpoints. With ``checkpoint_dir``, ``checkpoint.pt`` is written atomically after every
epoch (weights, optimiser, loss scaler, epoch, early-stopping state, best weights so far,
history, RNG states); ``fit`` with the same directory continues from the last finished
epoch and ends with the same weights as an uninterrupted run (on CPU). The final weights
are written to ``weights.pt``. Both load with ``torch.load(path, weights_only=True)``.

The fitted network is also stored as plain arrays (every state-dict tensor, batch-norm
running statistics included) by :meth:`to_dataset`, and rebuilt by :meth:`from_dataset`.
torch is imported only when an auto-encoder is built or trained.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import xarray as xr

from .._deprecation import renamed_kwargs
from .._location import user_path
from .._progress import step
from .._torch import (
    EarlyStopping,
    float_tensor,
    load_weights_only,
    require_torch,
    resolve_device,
    save_atomic,
    seeded,
)
from .._validation import Bound, hidden_widths, non_finite_input
from ..exceptions import CheckpointMismatchError, InputError
from .base import Representation
from .loaders import MemoryLoader, StreamingLoader, available_memory, load_rows

__all__ = ["AutoEncoder", "build_network", "resolve_device", "MAX_VAL_BYTES"]

#: validation rows held in memory at most (sub-sampled beyond): 256 MiB of float32 rows
MAX_VAL_BYTES = 256 << 20
#: validation rows of a streamed fit come in runs of this many contiguous training rows
VAL_RUN = 512
#: rows per forward pass in transform / inverse_transform / validation (a 1,024-row output of
#: all genes is 64 MB; the layers' outputs are held twice over while a pass runs)
EVAL_ROWS = 1024
#: fraction of free memory the training rows may take to be held there
HOST_FRACTION, GPU_FRACTION = 0.25, 0.5
CHECKPOINT, WEIGHTS = "checkpoint.pt", "weights.pt"
_CHECKPOINT_FORMAT = 1


_torch = require_torch


def _amp_dtype(device, mixed_precision: bool):
    """Autocast dtype on CUDA (bfloat16 where supported, else float16); None means float32."""
    torch = _torch()
    if not mixed_precision or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def layer_widths(n_features: int, n_components: int, hidden) -> list[int]:
    """Widths of every layer, input to output: genes, hidden..., k, reversed hidden..., genes."""
    hidden = hidden_widths(hidden)
    return [int(n_features), *hidden, int(n_components), *hidden[::-1], int(n_features)]


def build_network(n_features: int, n_components: int, hidden=(500, 250, 125)):
    """The auto-encoder as ``ModuleDict(encoder=..., decoder=...)``.

    Encoder and decoder hidden layers (and the code layer) are Linear -> BatchNorm1d -> ELU;
    the output layer is Linear -> Sigmoid.
    """
    torch = _torch()
    nn = torch.nn
    widths = layer_widths(n_features, n_components, hidden)
    middle = len(hidden_widths(hidden)) + 1

    def block(a, b):
        return [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ELU()]

    enc = [m for a, b in zip(widths[:middle], widths[1 : middle + 1]) for m in block(a, b)]
    dec = [m for a, b in zip(widths[middle:-2], widths[middle + 1 : -1]) for m in block(a, b)]
    dec += [nn.Linear(widths[-2], widths[-1]), nn.Sigmoid()]
    return nn.ModuleDict({"encoder": nn.Sequential(*enc), "decoder": nn.Sequential(*dec)})


def _state_dims(net, widths: list[int]) -> dict[str, tuple[str, ...]]:
    """Dimension names of every state-dict entry: 'gene', 'component' or 'units_<layer>'."""
    torch = _torch()
    middle = (len(widths) - 1) // 2

    def dim(p):
        return "gene" if p in (0, len(widths) - 1) else "component" if p == middle else f"units_{p}"

    dims, position = {}, 0
    for part in ("encoder", "decoder"):
        for index, module in enumerate(net[part]):
            prefix = f"{part}.{index}."
            if isinstance(module, torch.nn.Linear):
                position += 1
                dims[prefix + "weight"] = (dim(position), dim(position - 1))
                dims[prefix + "bias"] = (dim(position),)
            elif isinstance(module, torch.nn.BatchNorm1d):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    dims[prefix + name] = (dim(position),)
                dims[prefix + "num_batches_tracked"] = ()
    return dims


def _array_name(key: str) -> str:
    return "net_" + key.replace(".", "_")


def _clone_state(net) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


class AutoEncoder(Representation):
    """Deep auto-encoder with batch norm and ELU (the reference study's), trained out-of-core.

    Parameters
    ----------
    n_components : int
        Width of the code (the embedding).
    hidden : int or tuple of int
        Encoder hidden widths (mirrored in the decoder). The study's (500, 250, 125) narrows
        to 125 units next to the code, so a 128-wide code has at most 125 independent
        directions; on the synthetic data this costs nothing measurable (the signal has ~12),
        but widen ``hidden`` (e.g. ``(500, 250, 256)``) for codes far beyond 125.
    learning_rate : float
        Adam learning rate.
    batch_size : int
    weight_decay : float
        Weight of the mean square of the non-bias weights added to the loss.
    max_epochs : int
        Upper bound on epochs. The study ran up to 50,000 with patience 300. The defaults
        (300, patience 30) were calibrated on synthetic 8 mm data; an epoch of a larger store
        has more steps, so fewer epochs do. Training on a CPU is slow with all genes
        (``docs/design.md``): use a GPU, or lower ``max_epochs``.
    patience : int
        Stop after this many epochs without a lower validation loss; the best epoch's
        weights are kept.
    val_fraction : float
        Fraction of the training rows held out for early stopping (0: stop on the training
        loss). At most :data:`MAX_VAL_BYTES` of rows are used.
    device : {'auto', 'cpu', 'cuda'}
    mixed_precision : bool
        Autocast on CUDA (ignored on CPU).
    in_memory : {'auto', True, False}
        Hold the training rows in (GPU or host) memory, or stream them from the store.
    block_rows, read_rows, shuffle_buffer, prefetch
        Streaming loader settings (:class:`~.loaders.StreamingLoader`). One read ahead keeps
        the CPU busy (a row block decodes in a fraction of the time it trains); reads land in
        the shuffle buffer, which holds ``1 + prefetch`` row blocks beyond its pool (4,096
        voxels x all genes: 256 MB each).
    checkpoint_dir : str, optional
        Write a checkpoint every epoch and resume from it. A checkpoint there that was written
        for other data or settings raises :class:`~.base.CheckpointMismatchError`.
    random_state : int
        Seeds the weights, the validation rows and the batch order.

    Attributes
    ----------
    net_ : torch.nn.ModuleDict
        The fitted network (eval mode) on ``device_``.
    history_ : dict
        ``train_loss`` and ``val_loss`` per epoch (MSE, without the weight penalty).
    best_epoch_, n_epochs_ : int
        The epoch whose weights were kept (1-based) and the number of epochs run.
    in_memory_ : bool
        Whether training held the rows in memory.

    Notes
    -----
    ``lr=`` (now ``learning_rate``) and ``progress=`` (now :func:`brainzarr.set_options`) still
    work for this release, with a FutureWarning.
    """

    method = "ae"
    _bounds: ClassVar[dict] = {
        "learning_rate": Bound(0, low_open=True),
        "batch_size": Bound(2, integer=True),  # batch norm needs two rows
        "weight_decay": Bound(0),
        "max_epochs": Bound(1, integer=True),
        "patience": Bound(1, integer=True),
        "val_fraction": Bound(0, 1, high_open=True),
        "block_rows": Bound(1, integer=True),
        "read_rows": Bound(1, integer=True, none=True),
        "shuffle_buffer": Bound(1, integer=True, none=True),
        "prefetch": Bound(0, integer=True),
    }

    @renamed_kwargs(lr="learning_rate", progress=None)
    def __init__(
        self,
        n_components: int = 2,
        *,
        hidden=(500, 250, 125),
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 1e-4,
        max_epochs: int = 300,
        patience: int = 30,
        val_fraction: float = 0.1,
        device: str = "auto",
        mixed_precision: bool = True,
        in_memory="auto",
        block_rows: int = 32,
        read_rows=None,
        shuffle_buffer=None,
        prefetch: int = 1,
        checkpoint_dir=None,
        random_state: int = 0,
    ):
        self.n_components = n_components
        self.hidden = hidden
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.device = device
        self.mixed_precision = mixed_precision
        self.in_memory = in_memory
        self.block_rows = block_rows
        self.read_rows = read_rows
        self.shuffle_buffer = shuffle_buffer
        self.prefetch = prefetch
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state

    # ------------------------------------------------------------------ public extras
    def fit(self, X, y=None, *, callback=None):
        """Train on X (rows, genes): NumPy, dask or DataArray (see the class docstring).

        Parameters
        ----------
        callback : callable, optional
            ``callback(model, info)`` after every epoch (once its checkpoint is written);
            ``info`` holds epoch, train_loss, val_loss, best_val, bad_epochs; it may call
            ``transform`` and ``inverse_transform`` (the current weights). Returning True
            stops training (the best weights are kept); an exception interrupts it, and a
            later ``fit`` with the same ``checkpoint_dir`` resumes.
        """
        self._callback = callback
        try:
            return super().fit(X, y)
        finally:
            self._callback = None

    def training_throughput(self, n_features: int, *, n_batches: int = 20) -> float:
        """Rows/s the network consumes in training steps (forward, backward, Adam), data
        already on the device: what a loader must keep up with."""
        torch = _torch()
        device = resolve_device(self.device)
        net, opt, scaler, amp = self._setup(n_features, device)
        gen = torch.Generator().manual_seed(int(self.random_state))
        batch = torch.rand(int(self.batch_size), n_features, generator=gen).to(device)
        self._train_step(net, opt, scaler, amp, batch)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            self._train_step(net, opt, scaler, amp, batch)
        _sync(device)
        return n_batches * int(self.batch_size) / (time.perf_counter() - t0)

    def save_weights(self, path) -> Path:
        """Write the fitted weights and sizes (loadable with ``torch.load(weights_only=True)``)."""
        path = user_path(path)
        save_atomic(self._weights_payload(_clone_state(self.net_)), path)
        return path

    @classmethod
    def load_weights(cls, path, **params):
        """An auto-encoder from :meth:`save_weights`' (or ``weights.pt``'s) file."""
        payload = load_weights_only(user_path(path), map_location="cpu")
        config = dict(payload["config"])
        model = cls(**{**config.pop("params"), **params})
        model.n_features_in_ = int(config["n_features_in"])
        net = build_network(model.n_features_in_, model.n_components, model.hidden)
        net.load_state_dict(payload["state_dict"])
        model._install(net)
        return model

    # ------------------------------------------------------------------ Representation
    def _check_params(self):
        hidden_widths(self.hidden)  # the numbers are checked by fit (_bounds)
        if self.in_memory not in ("auto", True, False):
            raise InputError(f"in_memory must be 'auto', True or False, got {self.in_memory!r}")

    def _setup(self, n_features, device):
        """Network (seeded), optimiser, loss scaler and autocast dtype."""
        torch = _torch()
        with seeded(self.random_state):
            net = build_network(n_features, self.n_components, self.hidden)
        net = net.to(device)
        # the penalty weight_decay * mean(w^2) over the non-bias weights has the gradient
        # 2 weight_decay / n_weights * w: Adam's (coupled, L2) weight_decay on that group
        decay = [p for name, p in net.named_parameters() if not name.endswith("bias")]
        groups = [
            {"params": decay, "weight_decay": 2 * self.weight_decay / sum(p.numel() for p in decay)},
            {"params": [p for name, p in net.named_parameters() if name.endswith("bias")], "weight_decay": 0.0},
        ]
        try:  # fused Adam: one kernel per step instead of ~10 passes over the weights (3x on CPU)
            opt = torch.optim.Adam(groups, lr=float(self.learning_rate), fused=True)
        except RuntimeError:  # torch < 2.4 has no fused Adam on CPU
            opt = torch.optim.Adam(groups, lr=float(self.learning_rate), foreach=True)
        amp = _amp_dtype(device, self.mixed_precision)
        scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
        return net, opt, scaler, amp

    def _train_step(self, net, opt, scaler, amp, batch):
        torch = _torch()
        net.train()
        with torch.autocast(batch.device.type, dtype=amp, enabled=amp is not None):
            recon = net["decoder"](net["encoder"](batch))
        mse = torch.mean((recon.float() - batch) ** 2)
        opt.zero_grad(set_to_none=True)
        scaler.scale(mse).backward()
        scaler.step(opt)
        scaler.update()
        return mse.detach()

    def _mse(self, net, data, amp) -> float:
        """Mean squared reconstruction error of rows held in memory (eval mode)."""
        torch = _torch()
        net.eval()
        total = torch.zeros((), dtype=torch.float64, device=data.device)
        with torch.no_grad(), torch.autocast(data.device.type, dtype=amp, enabled=amp is not None):
            for i in range(0, len(data), EVAL_ROWS):
                x = data[i : i + EVAL_ROWS]
                total += ((net["decoder"](net["encoder"](x)).float() - x) ** 2).sum(dtype=torch.float64)
        return float(total) / max(data.numel(), 1)

    def _plan_in_memory(self, nbytes: int, device) -> bool:
        if self.in_memory != "auto":
            return bool(self.in_memory)
        if device.type == "cuda":
            free, _ = _torch().cuda.mem_get_info(device)
            return nbytes <= GPU_FRACTION * free
        return nbytes <= HOST_FRACTION * available_memory()

    def _split_rows(self, n_rows: int, n_features: int, *, runs: bool = False):
        """Sorted validation and training row indices (seeded).

        With ``runs`` (streamed training) the validation rows are whole runs of
        :data:`VAL_RUN` rows at random places, so reading them touches a few row blocks of the
        store instead of nearly all of them (rows drawn one by one would make the validation
        set cost a full pass at 1 mm).
        """
        n_val = int(round(self.val_fraction * n_rows))
        n_val = min(n_val, max(1, MAX_VAL_BYTES // (4 * n_features)), n_rows - 2)
        if n_val < 1:
            return np.empty(0, dtype=np.int64), np.arange(n_rows)
        rng = np.random.default_rng([int(self.random_state), 3])
        if runs and n_rows >= 4 * VAL_RUN:
            starts = rng.permutation(n_rows // VAL_RUN)[: -(-n_val // VAL_RUN)] * VAL_RUN
            val = np.unique(np.concatenate([np.arange(s, s + VAL_RUN) for s in starts]))[:n_val]
            return val, np.setdiff1d(np.arange(n_rows), val)
        perm = rng.permutation(n_rows)
        return np.sort(perm[:n_val]), np.sort(perm[n_val:])

    def _fit(self, X):
        torch = _torch()
        self._check_params()
        n_rows, n_features = (int(s) for s in X.shape)
        if n_rows < 3:
            raise InputError(f"the auto-encoder needs at least 3 training rows, got {n_rows}")
        device = resolve_device(self.device)
        in_memory = self._plan_in_memory(4 * n_rows * n_features, device)
        val_idx, train_idx = self._split_rows(n_rows, n_features, runs=not in_memory)
        net, opt, scaler, amp = self._setup(n_features, device)
        state = {
            "epoch": 0,
            "best_val": math.inf,
            "best_epoch": 0,
            "bad_epochs": 0,
            "stopped": False,
            "history": {"train_loss": [], "val_loss": []},
            "best_state": _clone_state(net),
        }
        fingerprint = self._fingerprint(n_rows, n_features, in_memory, len(val_idx))
        ckpt = self._checkpoint_path()
        if ckpt is not None and ckpt.exists():
            state = self._resume(ckpt, fingerprint, net, opt, scaler)
        if not state["stopped"] and state["epoch"] < self.max_epochs:  # else nothing to read
            loader, val = self._data(X, device, in_memory, val_idx, train_idx)

        self.net_ = net  # the callback may transform with the current weights
        left = 0 if state["stopped"] else max(self.max_epochs - state["epoch"], 0)
        batches = -(-len(train_idx) // int(self.batch_size))
        with self._deterministic(device), step(left * batches, f"ae k={self.n_components}", unit="batch") as bar:
            while not state["stopped"] and state["epoch"] < self.max_epochs:
                epoch = state["epoch"]
                total = torch.zeros((), dtype=torch.float64, device=device)
                seen = 0
                for batch in _counted(loader.epoch(epoch), bar):
                    if len(batch) < 2:  # batch norm cannot train on one row
                        continue
                    batch = torch.as_tensor(batch).to(device, non_blocking=True)
                    total += self._train_step(net, opt, scaler, amp, batch).double() * len(batch)
                    seen += len(batch)
                train_loss = float(total) / max(seen, 1)
                val_loss = self._mse(net, val, amp) if len(val) else train_loss
                if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                    self._refuse_lost_training(loader, val, epoch)
                self._update(state, net, train_loss, val_loss)
                if ckpt is not None:
                    save_atomic(self._checkpoint(state, fingerprint, net, opt, scaler), ckpt)
                bar.note(epoch=state["epoch"], train=f"{train_loss:.3g}", val=f"{val_loss:.3g}")
                if getattr(self, "_callback", None) is not None and self._callback(
                    self,
                    {
                        "epoch": state["epoch"],
                        "train_loss": train_loss,
                        "val_loss": val_loss,
                        "best_val": state["best_val"],
                        "bad_epochs": state["bad_epochs"],
                    },
                ):
                    state["stopped"] = True
        if ckpt is not None:  # the last epoch's state, so that more epochs can follow
            state["stopped"] = True
            save_atomic(self._checkpoint(state, fingerprint, net, opt, scaler), ckpt)
        net.load_state_dict(state["best_state"])
        self._install(net)
        self.in_memory_ = in_memory
        self.history_ = {k: list(v) for k, v in state["history"].items()}
        self.best_epoch_ = int(state["best_epoch"])
        self.n_epochs_ = int(state["epoch"])
        if ckpt is not None:
            self.save_weights(ckpt.parent / WEIGHTS)

    def _refuse_lost_training(self, loader, val, epoch: int) -> None:
        """A loss that is NaN or infinite: the weights are lost (early stopping would quietly
        keep the untrained ones). Say whether X holds values that are not finite (the rows held
        in memory, else the epoch's batches read once more: on the way to an error) or the
        training diverged."""
        torch = _torch()
        held = [loader.data] if isinstance(loader, MemoryLoader) else loader.epoch(epoch)  # batch by batch
        if any(not bool(torch.isfinite(torch.as_tensor(rows)).all()) for rows in itertools.chain([val], held)):
            raise non_finite_input()
        raise InputError(
            f"the auto-encoder's loss is not finite in epoch {epoch + 1}, though X is: the training diverged; "
            f"give a lower learning_rate than {self.learning_rate}, or scale X (its squares must fit in float32)"
        )

    def _update(self, state, net, train_loss, val_loss):
        """Record an epoch and the early-stopping state (kept in ``state``, which checkpoints hold)."""
        stopper = EarlyStopping(self.patience)
        stopper.load_state_dict(
            {
                "best": state["best_val"],
                "best_epoch": state["best_epoch"],
                "bad_epochs": state["bad_epochs"],
                "epoch": state["epoch"],
            }
        )
        if stopper.update(val_loss):
            state["best_state"] = _clone_state(net)
        state.update(
            epoch=stopper.epoch,
            best_val=stopper.best,
            best_epoch=stopper.best_epoch,
            bad_epochs=stopper.bad_epochs,
            stopped=state["stopped"] or stopper.stop,
        )
        state["history"]["train_loss"].append(train_loss)
        state["history"]["val_loss"].append(val_loss)

    def _data(self, X, device, in_memory, val_idx, train_idx):
        """The training loader and the validation rows (a tensor on the device)."""
        torch = _torch()
        n_rows, n_features = X.shape
        val_mask = np.zeros(n_rows, dtype=bool)
        val_mask[val_idx] = True
        common = {"random_state": int(self.random_state)}
        if in_memory:
            if isinstance(X, np.ndarray) and device.type == "cpu":
                data = float_tensor(X)
            else:
                data = load_rows(
                    X,
                    out=torch.empty((n_rows, n_features), dtype=torch.float32, device=device),
                    block_rows=self.block_rows,
                    prefetch=self.prefetch,
                    desc=f"ae: loading to {device.type}",
                )
            return (
                MemoryLoader(data, self.batch_size, rows=train_idx, **common),
                data.index_select(0, torch.from_numpy(val_idx).to(device)),
            )
        loader = StreamingLoader(
            X,
            self.batch_size,
            mask=~val_mask,
            block_rows=self.block_rows,
            read_rows=self.read_rows,
            shuffle_buffer=self.shuffle_buffer,
            prefetch=self.prefetch,
            **common,
        )
        val = load_rows(
            X,
            val_mask,
            block_rows=self.block_rows,
            prefetch=self.prefetch,
            desc="ae: validation rows",
        )
        return loader, torch.from_numpy(val).to(device)

    @contextlib.contextmanager
    def _deterministic(self, device):
        torch = _torch()
        before = torch.are_deterministic_algorithms_enabled()
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(before)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        folder = user_path(self.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / CHECKPOINT

    def _training_params(self) -> dict:
        """Parameters that change the trained weights (a checkpoint must match them)."""
        skip = {"device", "checkpoint_dir", "prefetch", "max_epochs", "mixed_precision"}
        return {k: _plain(v) for k, v in self.get_params().items() if k not in skip}

    def _fingerprint(self, n_rows, n_features, in_memory, n_val) -> dict:
        return {
            "params": self._training_params(),
            "n_rows": int(n_rows),
            "n_features": int(n_features),
            "in_memory": bool(in_memory),
            "n_val": int(n_val),
        }

    def _checkpoint(self, state, fingerprint, net, opt, scaler) -> dict:
        # no random state: batches come from numpy generators seeded per epoch and the network
        # draws nothing, so torch's global generator (the caller's) is neither saved nor restored
        return {
            "format": _CHECKPOINT_FORMAT,
            "fingerprint": fingerprint,
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(),
            **{
                k: state[k]
                for k in ("epoch", "best_val", "best_epoch", "bad_epochs", "stopped", "history", "best_state")
            },
        }

    def _resume(self, path, fingerprint, net, opt, scaler) -> dict:
        ckpt = load_weights_only(path, map_location="cpu")
        if ckpt.get("format") != _CHECKPOINT_FORMAT or ckpt.get("fingerprint") != fingerprint:
            raise CheckpointMismatchError(
                f"the checkpoint {path} was written for other data or settings "
                f"({ckpt.get('fingerprint')} vs {fingerprint}); use another "
                "checkpoint_dir or delete it to start afresh"
            )
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        # checkpoints of earlier versions hold torch's global random state too ("rng"), left unread
        state = {k: ckpt[k] for k in ("epoch", "best_val", "best_epoch", "bad_epochs", "stopped", "history")}
        state["best_state"] = {k: v.to("cpu") for k, v in ckpt["best_state"].items()}
        # a finished run asked for more epochs continues; early stopping still decides
        state["stopped"] = bool(state["stopped"]) and state["bad_epochs"] >= self.patience
        return state

    def _weights_payload(self, state_dict) -> dict:
        return {
            "state_dict": state_dict,
            "config": {
                "params": {k: _plain(v) for k, v in self.get_params().items()},
                "n_features_in": int(self.n_features_in_),
            },
        }

    # ------------------------------------------------------------------ inference
    def _run(self, part: str, X: np.ndarray) -> np.ndarray:
        torch = _torch()
        net = self.net_
        device = next(net.parameters()).device
        amp = _amp_dtype(device, self.mixed_precision)
        width = self.n_components if part == "encoder" else self.n_features_in_
        out = np.empty((len(X), width), dtype=np.float32)  # filled piece by piece: no concatenation
        net.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            for i in range(0, len(X), EVAL_ROWS):
                x = float_tensor(X[i : i + EVAL_ROWS]).to(device)
                out[i : i + EVAL_ROWS] = net[part](x).float().cpu().numpy()
        return out

    def _transform_block(self, X: np.ndarray) -> np.ndarray:
        return self._run("encoder", X)

    def _inverse_block(self, Z: np.ndarray) -> np.ndarray:
        return self._run("decoder", Z)

    # ------------------------------------------------------------------ persistence
    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> AutoEncoder:
        """Rebuild a fitted auto-encoder written by :meth:`to_dataset`, to run on this machine.

        The fit's ``checkpoint_dir`` is not carried: it named a folder of the store the model was
        fitted in (relative to where that fit ran), where a refit of the loaded model would write.
        A model trained on a device this machine lacks (``device='cuda'``, loaded on a laptop)
        runs where ``'auto'`` puts it, with a warning.
        """
        params = dict(ds.attrs.get("params", {}), checkpoint_dir=None)
        trained_on = params.get("device", "auto")
        try:
            resolve_device(trained_on)
        except InputError:
            params["device"] = "auto"
            warnings.warn(
                f"the auto-encoder was trained with device={trained_on!r}, which this machine lacks; "
                f"it runs on {resolve_device('auto').type}",
                UserWarning,
                stacklevel=3,
            )
        return super().from_dataset(ds.assign_attrs(params=params))

    def _param_arrays(self) -> dict:
        state = self.net_.state_dict()
        widths = layer_widths(self.n_features_in_, self.n_components, self.hidden)
        dims = _state_dims(self.net_, widths)
        arrays = {_array_name(k): (dims[k], v.detach().cpu().numpy()) for k, v in state.items()}
        for name, values in getattr(self, "history_", {}).items():
            arrays[f"history_{name}"] = (("epoch",), np.asarray(values, dtype=np.float64))
        return arrays

    def _set_param_arrays(self, ds: xr.Dataset) -> None:
        torch = _torch()
        net = build_network(self.n_features_in_, self.n_components, self.hidden)
        net.load_state_dict({k: torch.from_numpy(np.array(ds[_array_name(k)].values)) for k in net.state_dict()})
        self._install(net)
        self.history_ = {k[len("history_") :]: ds[k].values.tolist() for k in ds.data_vars if k.startswith("history_")}

    def _install(self, net) -> None:
        """Make ``net`` the fitted network: on this model's device, in eval mode."""
        device = resolve_device(self.device)
        self.net_ = net.to(device).eval()
        self.device_ = str(device)


def _plain(v):
    """JSON-like value for comparisons and checkpoints (tuples become lists)."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v


def _sync(device):
    if device.type == "cuda":
        _torch().cuda.synchronize(device)


def _counted(batches, bar):
    """Yield ``batches``, counting each on the job's progress bar."""
    for batch in batches:
        yield batch
        bar.update(1)
