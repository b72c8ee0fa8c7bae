"""The training loop: mini-batches of samples, all targets at once, masked MSE, checkpoints.

Targets are either the gene-space projection of the data (samples x components, dense) or
the standardised data itself (samples x genes) with a mask of observed entries; the loop is
the same. Each epoch visits the samples in an order drawn from ``(seed, epoch)``, so a run
resumed from a checkpoint (network, head, optimiser and schedule state, saved every
``checkpoint_every`` epochs with ``torch.save`` and read back with ``weights_only=True``)
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._progress import step
from .._torch import load_weights_only, require_torch, save_atomic

torch = require_torch("inr")

__all__ = ["train", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


def train(
    network: torch.nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    donor: np.ndarray | None = None,
    loss_scale: float = 1.0,
    max_epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    random_state: int,
    device: torch.device,
    checkpoint: Path | None = None,
    checkpoint_every: int = 25,
    fingerprint: str = "",
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
        [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}], lr=learning_rate
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=max_epochs * steps_per_epoch)
    history: list[float] = []
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = load_weights_only(checkpoint, map_location=device)
        if state.get("fingerprint") == fingerprint and state.get("epochs") == max_epochs:
            network.load_state_dict(state["network"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            history = [float(v) for v in state["history"]]
            start = int(state["epoch"]) + 1
    network.train()
    with step(max_epochs - start, desc, unit="epoch") as bar:
        for epoch in range(start, max_epochs):
            order = torch.as_tensor(np.random.default_rng([int(random_state), 17, epoch]).permutation(n), device=device)
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
            bar.note(loss=f"{history[-1]:.4f}")
            bar.update(1)
            last = epoch == max_epochs - 1
            if checkpoint is not None and (
                (last and final_checkpoint) or (not last and (epoch + 1) % checkpoint_every == 0)
            ):
                _save_checkpoint(checkpoint, network, opt, sched, history, epoch, max_epochs, fingerprint)
            if callback is not None:
                callback(epoch, history[-1])
    network.eval()
    return history


def _save_checkpoint(path: Path, network, opt, sched, history, epoch, max_epochs, fingerprint):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(  # a checkpoint is whole or absent
        {
            "network": network.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "history": list(history),
            "epoch": int(epoch),
            "epochs": int(max_epochs),
            "fingerprint": fingerprint,
        },
        path,
    )
