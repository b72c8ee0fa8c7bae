"""The gene-conditioned implicit neural representation: one coordinate network, every gene.

Design
------
A coordinate network ``f`` (Fourier-feature MLP by default, or SIREN; inputs: MNI x, y, z
scaled to [-1, 1] and optionally nilearn's grey/white-matter masks) maps a location to
``n_features`` numbers. Gene ``g`` is a learned embedding ``e_g``, a bias ``b_g`` and, per
donor, an offset ``delta_{d,g}``; its standardised expression at ``x`` for donor ``d`` is
``f(x) . e_g + b_g + delta_{d,g}`` and the *population map* drops the donor term. One forward
pass per location serves all genes, so rendering a block of voxels is ``features @ E``.

Training (``solver``):

* ``'projected'`` (the default for complete tables): the standardised table ``Z`` (samples x
  genes) is reduced to its top ``rank`` gene-space components ``Z V`` (a randomised SVD); the
  network and a head of ``rank`` outputs are trained on those in mini-batches of samples.
  For a complete table this is exactly the full per-gene least-squares problem with the gene
  embeddings restricted to the top-``rank`` gene subspace, at a cost independent of the
  number of genes (15,633 genes train as fast as 100).
* ``'masked'``: the network and a head with one output per gene are trained directly on
  ``Z`` with the loss masked per sample x gene (for tables with many missing values).

An *ensemble* (``n_ensemble`` members, default 3) trains that many networks with seeds
``random_state, random_state + 1, ...`` and averages their predictions. Stored as one model: the members'
features side by side (``n_ensemble x n_features`` of them) and their read-outs stacked and
divided by ``n_ensemble``, so rendering is still one matrix product per block. Averaging cuts
the variance that a network trained on a few thousand noisy samples has: on the synthetic
source (2,000 genes, leave-one-donor-out) one network's held-out RMSE was 9.85 % below IDW's,
three members' 10.43 % (the true field: 13.13 %).

Then every gene's read-out (``e_g, b_g, delta_{d,g}``) is solved exactly by ridge regression
on the learned features (:func:`~brainzarr.inr.readout.solve_readout`), over the samples where
the gene was measured. A gene measured at only a few samples thus borrows the spatial
structure the network learned from all the others.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._atomic import atomic_directory
from .._deprecation import renamed_kwargs
from .._location import user_path
from .._torch import load_weights_only, require_torch, resolve_device, seeded
from .._validation import SEED, Bound, check_params, whole_number
from ..exceptions import DataNotFoundError, InputError, ResultExistsError, StoreExistsError
from ..sources.table import validate_sample_table, warn_of_samples_outside_the_brain
from .genes import gene_positions
from .inputs import location_inputs, n_inputs
from .network import BACKBONES, EnsembleBackbone, INRNetwork, ReadoutHead, make_backbone
from .readout import solve_readout
from .training import CHECKPOINT_NAME, train

torch = require_torch("inr")


__all__ = ["GeneINR", "SOLVERS", "MODEL_FORMAT"]

SOLVERS = ("auto", "projected", "masked")
MODEL_FORMAT = "brainzarr-inr"
_FORMAT_VERSION = 1
#: parameters that do not change what a fit computes (left out of fingerprints and provenance)
_RUNTIME_PARAMS = ("device", "checkpoint_dir", "checkpoint_every")
#: parameter names of models saved by earlier versions
_OLD_NAMES = {"epochs": "max_epochs", "lr": "learning_rate", "seed": "random_state"}


class GeneINR(BaseEstimator):
    """Gene-conditioned INR fitted on a sample table (see the module docstring).

    Parameters
    ----------
    n_features : int
        Length of the feature vector (and of every gene embedding) of one network.
    n_ensemble : int
        Networks trained with seeds ``random_state, random_state + 1, ...`` whose predictions are averaged
        (see the module docstring); each costs one training.
    width, depth : int
        Hidden width and number of hidden layers of the coordinate network.
    backbone : {'fourier', 'siren'}
    n_fourier : int
        Random Fourier frequencies ('fourier').
    length_scale_mm : float
        Length scale of the Fourier frequencies' Gaussian prior, in mm ('fourier').
    omega : float
        First-layer frequency factor ('siren').
    tissue : bool
        Add nilearn's MNI152 grey/white-matter masks as inputs.
    donor_effects : bool
        Learn per-donor x gene offsets (kept out of the population map).
    solver : {'auto', 'projected', 'masked'}
        'auto': 'projected' when at least half the genes are observed at every sample.
    rank : int
        Gene-space components the 'projected' solver trains on.
    max_epochs, batch_size, learning_rate, weight_decay :
        Training schedule (AdamW, one-cycle learning rate; decay on the network's weights).
    feature_penalty, donor_penalty : float
        Ridge penalties of the per-gene read-out.
    device : str
        'auto' (CUDA when available), 'cpu' or 'cuda'.
    random_state : int
        Seeds the network, the sample order and the SVD; recorded with the model.
    checkpoint_dir : str or Path, optional
        Save the training state there every ``checkpoint_every`` epochs; a fit with the same
        settings and data resumes from it.

    Attributes
    ----------
    genes_, donors_ : arrays of str
    embeddings_ : (n_ensemble * n_features, n_genes) float32
    bias_ : (n_genes,) float32
    donor_offsets_ : (n_donors, n_genes) float32
    gene_mean_, gene_scale_ : (n_genes,) float32
        Standardisation (predictions are ``(f . e + b) * scale + mean``).
    backbone_ : torch.nn.Module
    history_ : list of float
        Training loss (mean squared error per standardised value) per epoch.
    solver_ : str
    fit_seconds_ : float

    Notes
    -----
    ``epochs=``, ``lr=`` and ``seed=`` (now ``max_epochs``, ``learning_rate``,
    ``random_state``) and ``progress=`` (now :func:`brainzarr.set_options`) still work for this
    release, with a FutureWarning.
    """

    @renamed_kwargs(epochs="max_epochs", lr="learning_rate", seed="random_state", progress=None)
    def __init__(
        self,
        n_features: int = 32,
        width: int = 256,
        depth: int = 2,
        backbone: str = "fourier",
        n_fourier: int = 128,
        length_scale_mm: float = 24.0,
        omega: float = 30.0,
        tissue: bool = True,
        donor_effects: bool = True,
        solver: str = "auto",
        rank: int = 64,
        max_epochs: int = 150,
        batch_size: int = 256,
        learning_rate: float = 3e-3,
        weight_decay: float = 0.0,
        feature_penalty: float = 1e-3,
        donor_penalty: float = 30.0,
        n_ensemble: int = 3,
        device: str = "auto",
        random_state: int = 0,
        checkpoint_dir=None,
        checkpoint_every: int = 25,
    ):
        self.n_features = n_features
        self.width = width
        self.depth = depth
        self.backbone = backbone
        self.n_fourier = n_fourier
        self.length_scale_mm = length_scale_mm
        self.omega = omega
        self.tissue = tissue
        self.donor_effects = donor_effects
        self.solver = solver
        self.rank = rank
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.feature_penalty = feature_penalty
        self.donor_penalty = donor_penalty
        self.n_ensemble = n_ensemble
        self.device = device
        self.random_state = random_state
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    # ------------------------------------------------------------------------------ fit
    def model_params(self) -> dict:
        """The parameters that decide what a fit computes (JSON-able)."""
        return {k: v for k, v in self.get_params().items() if k not in _RUNTIME_PARAMS}

    #: what each numeric parameter takes (``float()`` took ``True`` as 1 and stopped on text)
    _bounds: ClassVar[dict] = {
        **dict.fromkeys(
            (
                "n_features",
                "width",
                "depth",
                "n_fourier",
                "rank",
                "max_epochs",
                "batch_size",
                "checkpoint_every",
                "n_ensemble",
            ),
            Bound(1, integer=True),
        ),
        **dict.fromkeys(("length_scale_mm", "learning_rate", "omega", "donor_penalty"), Bound(0, low_open=True)),
        **dict.fromkeys(("weight_decay", "feature_penalty"), Bound(0)),
    }

    def _check_params(self):
        if self.backbone not in BACKBONES:
            raise InputError(f"unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}")
        if self.solver not in SOLVERS:
            raise InputError(f"unknown solver {self.solver!r}; choose from {', '.join(SOLVERS)}")
        whole_number(self.random_state, "random_state", hint=SEED)
        check_params(self, self._bounds)

    def fit(self, table: xr.Dataset, mask=None, *, callback=None) -> GeneINR:
        """Fit on a sample table (``expression (sample, gene)`` with x, y, z, donor, ...).

        Parameters
        ----------
        table : xarray.Dataset
            A sample table (:mod:`brainzarr.sources.table`). NaN values count as unobserved.
        mask : (n_samples, n_genes) bool, optional
            Observed entries (combined with the finite values); the loss and each gene's
            read-out use only these.
        callback : callable(epoch, loss), optional
            Called after every training epoch.
        """
        self._check_params()
        validate_sample_table(table)
        warn_of_samples_outside_the_brain(table)
        start = time.perf_counter()
        values = np.asarray(table["expression"].values, dtype=np.float32)
        observed = np.isfinite(values)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != values.shape:
                raise InputError(f"mask has shape {mask.shape}, the table's expression {values.shape}")
            observed &= mask
        counts = observed.sum(axis=0)
        if (counts == 0).any():
            bad = table["gene"].values[counts == 0]
            raise InputError(f"{len(bad)} gene(s) have no observed value (e.g. {bad[0]})")
        device = resolve_device(self.device)
        xyz = np.column_stack([table[c].values for c in "xyz"]).astype(float)
        self.donors_, donor = np.unique(table["donor"].values.astype(str), return_inverse=True)
        n_donors = len(self.donors_) if self.donor_effects else 0
        mean = np.where(observed, values, 0).sum(axis=0) / counts
        z = np.where(observed, values - mean, 0.0)
        scale = np.sqrt((z**2).sum(axis=0) / np.maximum(counts - 1, 1))
        scale = np.where(scale > 0, scale, 1.0)
        z = (z / scale).astype(np.float32)
        complete = observed.all(axis=0)
        solver = self.solver
        if solver == "auto":
            solver = "projected" if complete.mean() >= 0.5 else "masked"
        if solver == "projected" and not complete.any():
            raise InputError("solver 'projected' needs genes observed at every sample", options={"solver": "masked"})
        inputs = location_inputs(xyz, self.tissue)

        if solver == "projected":
            targets, residual = _gene_space_projection(z[:, complete], self.rank, self.random_state)
            train_mask, loss_scale = None, 1.0 / int(complete.sum())
        else:
            targets, residual, train_mask, loss_scale = z, 0.0, observed, 1.0
        n_members = int(self.n_ensemble)
        members, histories, readouts = [], [], []
        for k in range(n_members):
            random_state = int(self.random_state) + k
            with seeded(random_state):
                network = INRNetwork(
                    self._make_backbone(random_state), ReadoutHead(self.n_features, targets.shape[1], n_donors)
                )
            fingerprint = self._fingerprint(inputs, targets, train_mask, donor, solver, k)
            checkpoint = self._checkpoint_path(k)
            history = train(
                network,
                inputs,
                targets,
                mask=train_mask,
                donor=donor if n_donors else None,
                loss_scale=loss_scale,
                max_epochs=int(self.max_epochs),
                batch_size=int(self.batch_size),
                learning_rate=float(self.learning_rate),
                weight_decay=float(self.weight_decay),
                random_state=random_state,
                device=device,
                checkpoint=checkpoint,
                checkpoint_every=int(self.checkpoint_every),
                fingerprint=fingerprint,
                callback=callback,
                final_checkpoint=n_members > 1,
                desc="training INR" + (f" ({k + 1}/{n_members})" if n_members > 1 else ""),
            )
            members.append(network.backbone)
            histories.append(history)
            readouts.append(
                solve_readout(
                    _features(network.backbone, inputs, device),
                    z,
                    None if observed.all() else observed,
                    donor if n_donors else None,
                    n_donors,
                    feature_penalty=float(self.feature_penalty),
                    donor_penalty=float(self.donor_penalty),
                )
            )
        # averaging the members' predictions = their features side by side, read-outs stacked / K
        self.backbone_ = members[0] if n_members == 1 else EnsembleBackbone(members).eval()
        self.device_ = device
        self.embeddings_ = (np.vstack([r[0] for r in readouts]) / n_members).astype(np.float32)
        self.bias_ = np.mean([r[1] for r in readouts], axis=0).astype(np.float32)
        self.donor_offsets_ = np.mean([r[2] for r in readouts], axis=0).astype(np.float32)
        history = np.mean(histories, axis=0).tolist()
        if not self.donor_effects:
            self.donor_offsets_ = np.zeros((len(self.donors_), z.shape[1]), np.float32)
        self.genes_ = table["gene"].values.astype(str)
        self.gene_mean_ = mean.astype(np.float32)
        self.gene_scale_ = scale.astype(np.float32)
        self.history_ = [float(h) + residual for h in history]
        self.solver_ = solver
        self.n_samples_ = int(len(xyz))
        self.source_ = {
            "name": str(table.attrs.get("source", "table")),
            "options": json.loads(table.attrs.get("options", "{}")),
        }
        self.sites_ = {
            "xyz": xyz,
            "donor": table["donor"].values.astype(str),
            "hemisphere": table["hemisphere"].values.astype(str),
            "structure": table["structure"].values.astype(str),
            "sample": table["sample"].values.astype(str),
        }
        self.fit_seconds_ = time.perf_counter() - start
        for k in range(n_members):
            checkpoint = self._checkpoint_path(k)
            if checkpoint is not None and checkpoint.exists():
                checkpoint.unlink()  # the fit is complete: nothing left to resume
        return self

    def _make_backbone(self, random_state: int):
        return make_backbone(
            self.backbone,
            n_inputs(self.tissue),
            n_features=self.n_features,
            width=self.width,
            depth=self.depth,
            n_fourier=self.n_fourier,
            length_scale_mm=self.length_scale_mm,
            omega=self.omega,
            random_state=random_state,
        )

    def _checkpoint_path(self, member: int):
        if not self.checkpoint_dir:
            return None
        name = CHECKPOINT_NAME if int(self.n_ensemble) == 1 else CHECKPOINT_NAME.replace(".pt", f"-{member}.pt")
        return user_path(self.checkpoint_dir) / name

    def _fingerprint(self, inputs, targets, mask, donor, solver, member: int = 0) -> str:
        h = hashlib.sha1(json.dumps(self.model_params(), sort_keys=True, default=str).encode())
        h.update(f"{solver}/{member}".encode())
        for arr in (inputs, targets, donor) + (() if mask is None else (np.packbits(mask),)):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    # -------------------------------------------------------------------------- predict
    def features(self, xyz, *, batch_rows: int = 65536) -> np.ndarray:
        """(n, n_features) float32 features of the coordinate network at MNI points."""
        check_is_fitted(self, "backbone_")
        return _features(self.backbone_, location_inputs(xyz, self.tissue), self.device_, batch_rows)

    def gene_index(self, genes=None) -> np.ndarray:
        """Positions of ``genes`` (None: all; int n: n evenly spaced; symbols; indices) in ``genes_``."""
        check_is_fitted(self, "genes_")
        return gene_positions(self.genes_, genes)

    def readout(self, genes=None) -> tuple[np.ndarray, np.ndarray]:
        """Raw-scale read-out ``(E (n_features, g), b (g,))``: population values are ``features @ E + b``."""
        idx = self.gene_index(genes)
        scale = self.gene_scale_[idx]
        return (
            (self.embeddings_[:, idx] * scale).astype(np.float32),
            (self.bias_[idx] * scale + self.gene_mean_[idx]).astype(np.float32),
        )

    def predict(self, xyz, genes=None, *, donor=None, warn_unknown: bool = True) -> np.ndarray:
        """Expression (n, g) float32 on the table's scale at MNI points.

        Parameters
        ----------
        xyz : (n, 3) array of MNI mm, or one point (x, y, z)
        genes : None, int, list of str, or index array
        donor : str or (n,) array of str, optional
            Add these donors' offsets. Default: the population map. A donor the model was not
            fitted on (``donors_``) gets none, with a warning naming it (a misspelt donor
            would otherwise give the population map unseen); ``warn_unknown=False`` silences
            it where that is expected (a held-out donor).
        """
        idx = self.gene_index(genes)
        E, b = self.readout(idx)
        out = self.features(xyz) @ E + b
        if donor is not None:
            labels = np.asarray(donor).astype(str).ravel()
            if labels.size == 1:
                labels = np.broadcast_to(labels, (len(out),))
            elif labels.size != len(out):
                raise InputError(
                    f"donor has {labels.size} labels for {len(out)} locations: give one donor, or one per location"
                )
            position = {d: i for i, d in enumerate(self.donors_)}
            rows = np.array([position.get(d, -1) for d in labels])
            known = rows >= 0
            if warn_unknown and not known.all():
                unknown = ", ".join(sorted(set(labels[~known].tolist())))
                warnings.warn(
                    f"donor(s) {unknown} not among the model's ({', '.join(self.donors_)}): "
                    "the population map there, without donor offsets",
                    UserWarning,
                    stacklevel=2,
                )
            out[known] += self.donor_offsets_[rows[known]][:, idx] * self.gene_scale_[idx]
        return out

    # ----------------------------------------------------------------------- save / load
    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write the model to a folder: ``config.json``, ``weights.pt`` (a state dict of tensors,
        read back with ``weights_only=True``) and ``sites.npz`` (the training samples' locations)."""
        check_is_fitted(self, "backbone_")
        path = user_path(path)
        check_save_path(path, overwrite=overwrite)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        with atomic_directory(path) as tmp:
            (tmp / "config.json").write_text(json.dumps(self._config(), indent=1, default=str))
            torch.save(self._state_dict(), tmp / "weights.pt")
            np.savez(tmp / "sites.npz", **self.sites_)
        return path

    def _config(self) -> dict:
        return {
            "format": MODEL_FORMAT,
            "format_version": _FORMAT_VERSION,
            "params": self.get_params()
            | {"checkpoint_dir": None if self.checkpoint_dir is None else str(self.checkpoint_dir)},
            "genes": self.genes_.tolist(),
            "donors": self.donors_.tolist(),
            "source": self.source_,
            "training": {
                "solver": self.solver_,
                "n_samples": self.n_samples_,
                "seconds": self.fit_seconds_,
                "history": self.history_,
                "device": str(self.device_),
            },
        }

    def _state_dict(self) -> dict:
        state = {f"backbone.{k}": v.detach().cpu() for k, v in self.backbone_.state_dict().items()}
        for name in ("embeddings_", "bias_", "donor_offsets_", "gene_mean_", "gene_scale_"):
            state[name.rstrip("_")] = torch.from_numpy(np.ascontiguousarray(getattr(self, name)))
        return state

    def weights_sha1(self) -> str:
        """Identifies the fitted weights (for provenance)."""
        h = hashlib.sha1()
        for k, v in sorted(self._state_dict().items()):
            h.update(k.encode())
            h.update(v.numpy().tobytes())
        return h.hexdigest()

    @classmethod
    def load(cls, path, *, device: str = "auto") -> GeneINR:
        """Read a model written by :meth:`save` (no pickles: tensors only)."""
        path = user_path(path)
        config_file = path / "config.json"
        if not config_file.exists():
            from ..store import is_store_root

            if is_store_root(path):
                raise InputError(f"{path} is a brainzarr store, not an INR model: give the folder an INR fit wrote")
            raise DataNotFoundError(
                f"no INR model at {path} (expected {config_file}); fit one with `brainzarr inr fit`"
            )
        config = json.loads(config_file.read_text())
        if config.get("format") != MODEL_FORMAT:
            raise InputError(f"{path} is not a brainzarr INR model")
        if config.get("format_version") != _FORMAT_VERSION:
            raise InputError(
                f"{path} has INR model format {config.get('format_version')}; this brainzarr reads "
                f"{_FORMAT_VERSION}: fit it again"
            )
        # models saved before ensembles existed have one network
        params = {_OLD_NAMES.get(k, k): v for k, v in config["params"].items() if k != "progress"}
        model = cls(**({"n_ensemble": 1} | params | {"device": device}))
        model.device_ = resolve_device(device)
        state = load_weights_only(path / "weights.pt", map_location="cpu")
        members = [model._make_backbone(int(model.random_state) + k) for k in range(int(model.n_ensemble))]
        model.backbone_ = members[0] if len(members) == 1 else EnsembleBackbone(members)
        model.backbone_.load_state_dict(
            {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        )
        model.backbone_.to(model.device_).eval()
        for name in ("embeddings_", "bias_", "donor_offsets_", "gene_mean_", "gene_scale_"):
            setattr(model, name, state[name.rstrip("_")].numpy())
        model.genes_ = np.asarray(config["genes"], dtype=str)
        model.donors_ = np.asarray(config["donors"], dtype=str)
        model.source_ = config["source"]
        training = config["training"]
        model.solver_, model.n_samples_ = training["solver"], training["n_samples"]
        model.fit_seconds_, model.history_ = training["seconds"], training["history"]
        with np.load(path / "sites.npz", allow_pickle=False) as sites:
            model.sites_ = {k: sites[k] for k in sites.files}
        return model


def _features(backbone, inputs: np.ndarray, device, batch_rows: int = 65536) -> np.ndarray:
    """A backbone's float32 features of location inputs, in batches."""
    parts = []
    with torch.inference_mode():
        for a in range(0, len(inputs), batch_rows) or [0]:
            parts.append(backbone(torch.as_tensor(inputs[a : a + batch_rows], device=device)).float().cpu().numpy())
    return np.concatenate(parts)


def _gene_space_projection(z: np.ndarray, rank: int, random_state: int):
    """Top-``rank`` gene-space components ``U S`` (samples x rank) of ``z`` and the per-value
    mean square left out (so losses read as per-gene mean squared errors)."""
    n, g = z.shape
    k = min(int(rank), n, g)
    if k == min(n, g) or min(n, g) <= 2 * k:
        u, s, _ = np.linalg.svd(z, full_matrices=False)
        u, s = u[:, :k], s[:k]
    else:
        from sklearn.utils.extmath import randomized_svd

        u, s, _ = randomized_svd(z, k, n_iter=4, random_state=int(random_state))
    total = sum(float(np.einsum("ij,ij->", c, c, dtype=np.float64)) for c in np.array_split(z, max(1, n // 512)))
    residual = max(total - float((s.astype(np.float64) ** 2).sum()), 0.0) / (n * g)
    return (u * s).astype(np.float32), residual


def check_save_path(path, *, overwrite: bool = False) -> None:
    """Refuse, before a fit, a path that :meth:`GeneINR.save` would refuse after it: anything
    but an empty folder or a model folder (always), or a model folder without ``overwrite``."""
    path = user_path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if not _is_model_folder(path):
        raise StoreExistsError(f"{path} exists and is not a brainzarr INR model; refusing to replace it")
    if not overwrite:
        raise ResultExistsError(f"{path} holds a fitted model", options={"overwrite": True})


def _is_model_folder(path: Path) -> bool:
    """A folder :meth:`GeneINR.save` wrote: its config.json names the format; nothing else in it."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    known = {"config.json", "weights.pt", "sites.npz"}
    return config.get("format") == MODEL_FORMAT and all(p.name in known for p in path.iterdir())
