"""Learned decoders from a neighbour embedding (t-SNE, UMAP) back to the data.

t-SNE has no inverse, and umap-learn's ``inverse_transform`` (a Delaunay triangulation of
the embedding) takes hours from 8-D on (lmcinnes/umap #325). brainzarr reconstructs both
through a decoder learned on the training voxels: embedding -> the training voxels' PCA
scores, mapped back to genes by the PCA basis (:mod:`.neighbour`). Fitting the scores is
fitting the genes: the PCA components are orthonormal, so the squared error over scores is
the squared error over genes within that subspace (the rest is the PCA truncation error).

Two decoders, chosen by name with :func:`make_decoder`:

``"knn"`` (default) — :class:`KNNDecoder`
    inverse-distance-weighted mean of the ``n_neighbors`` training voxels nearest in the
    embedding. Neighbour embeddings are built to keep local neighbourhoods, so the voxels
    next to a point in the embedding are the ones like it in the data: the decoder averages
    them. No training, no tuning beyond ``k``, the same at every dimension, and nothing to
    store beyond the training embedding and scores the model keeps anyway.
``"mlp"`` — :class:`MLPDecoder`
    a small PyTorch network (standardised embedding -> ELU hidden layers -> scores), Adam,
    mean squared error, early stopping on a seeded validation part. Smooth, and able to
    interpolate between training voxels; its weights are stored as arrays.

Both are deterministic given their seed (the MLP on CPU).

The kNN decoder reconstructs better than the MLP decoder on the synthetic stores and hardly
depends on k, hence ``"knn"`` with k = 10 by default (``docs/design.md``).

What the RMSE then measures. The kNN decoder reproduces a training voxel from its own
position, so its *train* RMSE is the PCA truncation error of ``decoder_components``
components, not a fit statistic: read the test RMSE. And since it looks up stored training
voxels, its test RMSE measures how well the embedding keeps each new voxel next to the
training voxels it resembles, not how much information k numbers carry: it is nearly flat
in the dimension, close to kNN regression in PCA space, and unlike PCA's. For the study's
"compression" reading use ``decoder="mlp"``, whose reconstruction depends on the k coordinates
alone.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .._validation import SEED, Bound, checked, hidden_widths, whole_number
from ..exceptions import InputError
from .knn import NeighbourIndex

__all__ = ["DECODERS", "Decoder", "KNNDecoder", "MLPDecoder", "make_decoder"]


@runtime_checkable
class Decoder(Protocol):
    """What a neighbour embedding needs of a decoder (embedding -> PCA scores).

    ``kind`` names it in stored results; ``fit(Z, T)`` learns from the training embedding and
    scores; ``predict(Z)`` decodes new rows; ``param_arrays()`` gives its state as
    ``{name: (dims, array)}`` and ``load(Z, T, ds)`` restores it from those arrays (no pickles).
    """

    kind: str

    def fit(self, Z: np.ndarray, T: np.ndarray) -> Decoder: ...

    def predict(self, Z: np.ndarray) -> np.ndarray: ...

    def param_arrays(self) -> dict: ...

    def load(self, Z: np.ndarray, T: np.ndarray, ds) -> Decoder: ...


#: rows per forward pass of the MLP and per neighbour query
PREDICT_ROWS = 4096


def make_decoder(kind: str = "knn", options: dict | None = None, *, random_state: int = 0, device: str = "auto"):
    """A decoder by name (see the module docstring); ``options`` go to its constructor."""
    options = dict(options or {})
    if kind == "knn":
        return KNNDecoder(**options)
    if kind == "mlp":
        options.setdefault("random_state", random_state)
        options.setdefault("device", device)
        return MLPDecoder(**options)
    raise InputError(f"unknown decoder {kind!r}; choose from {', '.join(DECODERS)}")


class KNNDecoder:
    """Inverse-distance-weighted k-nearest-neighbour regression in embedding space.

    Parameters
    ----------
    n_neighbors : int
        Training voxels averaged per prediction.
    """

    kind = "knn"

    def __init__(self, n_neighbors: int = 10):
        self.n_neighbors = int(checked(n_neighbors, "n_neighbors", Bound(1, integer=True)))

    def fit(self, Z: np.ndarray, T: np.ndarray):
        """Remember the training pairs (embedding Z, targets T) and index Z."""
        self.targets_ = np.asarray(T, dtype=np.float32)
        self.index_ = NeighbourIndex(Z)
        return self

    def predict(self, Z: np.ndarray) -> np.ndarray:
        out = np.empty((len(Z), self.targets_.shape[1]), dtype=np.float32)
        for a in range(0, len(Z), PREDICT_ROWS):
            dist, idx = self.index_.query(Z[a : a + PREDICT_ROWS], self.n_neighbors)
            # a point on a training voxel (distance 0) takes that voxel's targets: its weight dominates
            w = 1.0 / np.maximum(dist, 1e-12)
            w /= w.sum(axis=1, keepdims=True)
            out[a : a + len(dist)] = np.einsum("nk,nkt->nt", w, self.targets_[idx])
        return out

    # the decoder is memory-based: its state is the training pairs, which the model stores
    def param_arrays(self) -> dict:
        return {}

    def load(self, Z, T, ds) -> KNNDecoder:
        return self.fit(Z, T)


class MLPDecoder:
    """A multilayer perceptron from the (standardised) embedding to the targets.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers (Linear -> ELU each); a linear output layer follows.
    max_epochs : int
        Upper bound on training epochs.
    batch_size : int
    learning_rate : float
        Adam's step size.
    weight_decay : float
        Adam's L2 penalty.
    patience : int
        Epochs without a better validation loss before stopping (the best weights are kept).
    val_fraction : float
        Part of the training voxels held out for early stopping (seeded).
    random_state : int
        Seed of the weights, the validation part and the batch order.
    device : {'auto', 'cpu', 'cuda'}
    """

    kind = "mlp"

    def __init__(
        self,
        hidden=(256, 256),
        max_epochs: int = 500,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-6,
        patience: int = 30,
        val_fraction: float = 0.1,
        random_state: int = 0,
        device: str = "auto",
    ):
        # given as a neighbour embedding's decoder_options: int() took 2.5 epochs as 2
        count, positive = Bound(1, integer=True), Bound(0, low_open=True)
        self.hidden = tuple(hidden_widths(hidden))
        self.max_epochs = int(checked(max_epochs, "max_epochs", count))
        self.batch_size = int(checked(batch_size, "batch_size", count))
        self.learning_rate = float(checked(learning_rate, "learning_rate", positive))
        self.weight_decay = float(checked(weight_decay, "weight_decay", Bound(0)))
        self.patience = int(checked(patience, "patience", count))
        self.val_fraction = float(checked(val_fraction, "val_fraction", Bound(0, 1, low_open=True, high_open=True)))
        self.random_state = whole_number(random_state, "random_state", hint=SEED)
        self.device = device

    def _network(self, n_in: int, n_out: int):
        import torch

        layers, width = [], n_in
        for h in self.hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ELU()]
            width = h
        layers.append(torch.nn.Linear(width, n_out))
        return torch.nn.Sequential(*layers)

    def fit(self, Z: np.ndarray, T: np.ndarray):
        import torch

        from .._torch import resolve_device, seeded

        device = resolve_device(self.device)
        Z = np.asarray(Z, dtype=np.float32)
        T = np.asarray(T, dtype=np.float32)
        self.z_mean_ = Z.mean(axis=0)
        self.z_scale_ = np.maximum(Z.std(axis=0), 1e-12).astype(np.float32)
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(Z))
        n_val = max(1, round(self.val_fraction * len(Z)))
        val, train = order[:n_val], order[n_val:]
        if len(train) == 0:
            raise InputError("too few training voxels for the MLP decoder's validation split")
        with seeded(self.random_state):
            net = self._network(Z.shape[1], T.shape[1]).to(device)
        Zs = torch.from_numpy((Z - self.z_mean_) / self.z_scale_).to(device)
        Tt = torch.from_numpy(T).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        from .._torch import EarlyStopping

        stopper, best_state = EarlyStopping(self.patience), None
        self.history_ = []
        for epoch in range(self.max_epochs):
            net.train()
            perm = train[np.random.default_rng((self.random_state, epoch)).permutation(len(train))]
            for a in range(0, len(perm), self.batch_size):
                rows = torch.from_numpy(perm[a : a + self.batch_size]).to(device)
                loss = torch.nn.functional.mse_loss(net(Zs[rows]), Tt[rows])
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                vrows = torch.from_numpy(val).to(device)
                vloss = float(torch.nn.functional.mse_loss(net(Zs[vrows]), Tt[vrows]))
            self.history_.append(vloss)
            if stopper.update(vloss):
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            elif stopper.stop:
                break
        net.load_state_dict(best_state)
        self._set_network(net.cpu().eval())
        self.n_epochs_ = len(self.history_)
        return self

    def _set_network(self, net):
        self.network_ = net
        self._linear = [m for m in net if hasattr(m, "weight")]

    def predict(self, Z: np.ndarray) -> np.ndarray:
        import torch

        Zs = (np.asarray(Z, dtype=np.float32) - self.z_mean_) / self.z_scale_
        out = []
        with torch.no_grad():
            for a in range(0, len(Zs), PREDICT_ROWS):
                out.append(self.network_(torch.from_numpy(np.ascontiguousarray(Zs[a : a + PREDICT_ROWS]))).numpy())
        return np.concatenate(out) if out else np.empty((0, self._linear[-1].out_features), np.float32)

    def param_arrays(self) -> dict:
        arrays = {"decoder_z_mean": (("component",), self.z_mean_), "decoder_z_scale": (("component",), self.z_scale_)}
        for i, layer in enumerate(self._linear):
            arrays[f"decoder_weight{i}"] = ((f"decoder_out{i}", f"decoder_in{i}"), layer.weight.detach().numpy())
            arrays[f"decoder_bias{i}"] = ((f"decoder_out{i}",), layer.bias.detach().numpy())
        return arrays

    def load(self, Z, T, ds) -> MLPDecoder:
        import torch

        self.z_mean_ = ds["decoder_z_mean"].values.astype(np.float32)
        self.z_scale_ = ds["decoder_z_scale"].values.astype(np.float32)
        n_layers = sum(1 for k in ds.data_vars if str(k).startswith("decoder_weight"))
        if n_layers != len(self.hidden) + 1:
            raise InputError(
                f"stored MLP decoder has {n_layers} layers; hidden={self.hidden} needs {len(self.hidden) + 1}"
            )
        net = self._network(len(self.z_mean_), ds[f"decoder_bias{n_layers - 1}"].size)
        linear = [m for m in net if hasattr(m, "weight")]
        with torch.no_grad():
            for i, layer in enumerate(linear):
                layer.weight.copy_(torch.from_numpy(ds[f"decoder_weight{i}"].values.astype(np.float32)))
                layer.bias.copy_(torch.from_numpy(ds[f"decoder_bias{i}"].values.astype(np.float32)))
        self._set_network(net.eval())
        return self


DECODERS = ("knn", "mlp")
