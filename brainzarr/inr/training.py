"""The training loop: mini-batches of samples, all targets at once, masked MSE, checkpoints.

Targets are either the gene-space projection of the data (samples x components, dense) or
the standardised data itself (samples x genes) with a mask of observed entries; the loop is
the same. Each epoch visits the samples in an order drawn from ``(seed, epoch)``, so a run
resumed from a checkpoint (network, head, optimiser and schedule state, saved every
``checkpoint_every`` epochs with ``torch.save`` and read back with ``weights_only=True``)
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..parallel import progress_enabled

__all__ = ["resolve_device", "train", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'; clear error if unavailable."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but PyTorch sees no CUDA GPU (use --device cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return dev


def train(
    network: torch.nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    donor: np.ndarray | None = None,
    loss_scale: float = 1.0,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    device: torch.device,
    checkpoint: Path | None = None,
    checkpoint_every: int = 25,
    fingerprint: str = "",
    progress: bool | None = None,
    callback=None,
    final_checkpoint: bool = False,
    desc: str = "training INR",
) -> list[float]:
    """Train ``network`` (an :class:`~brainzarr.inr.network.INRNetwork`) in place; return the loss per epoch.

    Parameters
    ----------
    inputs : (n, n_inputs) float32
    targets : (n, m) float32
        Unobserved entries may hold anything finite when ``mask`` marks them.
    mask : (n, m) bool, optional
        Observed entries; the loss is the mean squared error over them.
    donor : (n,) int, optional
        Donor index of every sample (for the head's donor offsets).
    loss_scale : float
        Multiplies the unmasked loss (the sum over targets per sample), e.g. 1 / n_genes for
        projected targets so the loss reads as a per-gene mean squared error.
    checkpoint : Path, optional
        Where to save (and resume from) the training state.
    fingerprint : str
        Identifies the data and settings; a checkpoint with another fingerprint is ignored.
    callback : callable(epoch, loss), optional
        Called after every epoch (after its checkpoint, if any).
    final_checkpoint : bool
        Also checkpoint the last epoch, so a resumed run skips this training altogether (an
        ensemble's finished members while a later one is interrupted).
    """
    network.to(device)
    x = torch.as_tensor(inputs, dtype=torch.float32, device=device)
    y = torch.as_tensor(targets, dtype=torch.float32, device=device)
    m = None if mask is None else torch.as_tensor(mask, dtype=torch.float32, device=device)
    d = None if donor is None else torch.as_tensor(donor, dtype=torch.long, device=device)
    n = len(x)
    steps_per_epoch = max(1, -(-n // batch_size))
    decay, plain = [], []
    for name, p in network.named_parameters():
        if not p.requires_grad:
            continue
        (decay if name.startswith("backbone") and p.ndim == 2 else plain).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}], lr=lr
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    history: list[float] = []
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("fingerprint") == fingerprint and state.get("epochs") == epochs:
            network.load_state_dict(state["network"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            history = [float(v) for v in state["history"]]
            start = int(state["epoch"]) + 1
    show = progress_enabled(progress)
    network.train()
    with tqdm(total=epochs, initial=start, desc=desc, unit="epoch", disable=not show, leave=show) as bar:
        for epoch in range(start, epochs):
            order = torch.as_tensor(np.random.default_rng([int(seed), 17, epoch]).permutation(n), device=device)
            total, weight = 0.0, 0.0
            for a in range(0, n, batch_size):
                b = order[a : a + batch_size]
                err = (network(x[b], None if d is None else d[b]) - y[b]) ** 2
                if m is None:
                    loss = err.sum(dim=1).mean() * loss_scale
                    w = float(len(b))
                else:
                    mb = m[b]
                    w = float(mb.sum())
                    loss = (err * mb).sum() / max(w, 1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * w
                weight += w
            history.append(total / max(weight, 1.0))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            bar.update(1)
            last = epoch == epochs - 1
            if checkpoint is not None and (
                (last and final_checkpoint) or (not last and (epoch + 1) % checkpoint_every == 0)
            ):
                _save_checkpoint(checkpoint, network, opt, sched, history, epoch, epochs, fingerprint)
            if callback is not None:
                callback(epoch, history[-1])
    network.eval()
    return history


def _save_checkpoint(path: Path, network, opt, sched, history, epoch, epochs, fingerprint):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "network": network.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "history": list(history),
            "epoch": int(epoch),
            "epochs": int(epochs),
            "fingerprint": fingerprint,
        },
        tmp,
    )
    os.replace(tmp, path)  # a checkpoint is whole or absent
