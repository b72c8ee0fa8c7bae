"""t-SNE with an out-of-sample transform and a learned decoder (openTSNE underneath).

Fit (training voxels): the streamed PCA of :mod:`.neighbour` reduces the rows to
``pca_components`` scores; perplexity-based affinities from their exact nearest neighbours
(3 x perplexity of them); PCA initialisation (the first ``n_components`` scores rescaled to a
standard deviation of 1e-4, seeded noise for the dimensions beyond the scores and a 1 %
jitter); openTSNE's optimiser: ``early_exaggeration_iter`` iterations with exaggeration 12
and momentum 0.8, then ``n_iter`` more, learning rate n / exaggeration ("auto").

Dimensions and gradient methods (``negative_gradient_method``)
--------------------------------------------------------------
The repulsive part of the t-SNE gradient couples every pair of points. openTSNE approximates
it two ways, neither of which reaches the study's higher dimensions:

* ``"fft"`` (interpolation on a grid, FIt-SNE): 1-D and 2-D only — openTSNE raises for
  more ("Interpolation based t-SNE for >2 dimensions is currently unsupported");
* ``"bh"`` (Barnes-Hut): a 2^d-ary space-partitioning tree, so its cost and memory grow as
  2^d; openTSNE warns above 3-D that it "can lead to segfaults and is generally a bad idea".
  brainzarr allows it up to 4-D and raises a ``ValueError`` beyond (its cost per iteration
  at 4 mm, ``docs/design.md``).

So brainzarr adds two methods that work at every dimension, plugged into openTSNE's optimiser
as its gradient function (the attractive part stays openTSNE's sparse kernel):

* ``"exact"``: the exact repulsion, computed in row blocks with PyTorch (on the GPU with
  ``device="cuda"``). Its cost is O(n^2 d) per iteration with O(n x block) memory: minutes
  per fit at 8 mm, hours per dimension on two CPU cores at 4 mm, where a GPU needs well under
  a minute. Computed in float32 (the gradient's relative error is ~1e-6, far below the
  approximations').
* ``"sampled"``: a stratified Monte-Carlo estimate (:func:`sampled_kl_divergence`): each
  point's repulsion from its 48 strongest affinities (the near points, whose pushes dominate)
  summed exactly, the rest estimated from ``negative_samples`` points drawn anew at every
  iteration; unbiased, O(n x (negative_samples + 48) x d) per iteration; close to the exact
  fit where both can run (``docs/design.md``).

``"auto"`` (default): ``"fft"`` up to 2-D; beyond, ``"exact"`` on a GPU or for at most
:data:`EXACT_MAX_N` training voxels (8 mm), ``"sampled"`` on the CPU for more (4 mm and finer).
The method used is stored with the model, so a loaded model transforms with it on any machine.

Out-of-sample transform
-----------------------
openTSNE's ``TSNEEmbedding.transform`` algorithm, with its defaults, against the fixed
training embedding: affinities to the 3 x ``transform_perplexity`` nearest training voxels
(perplexity 5), initial position at the median of their embeddings, then
``transform_n_iter`` iterations (learning rate 0.1, exaggeration 1.5, momentum 0.8,
gradients clipped at 0.25) that move only the new points, each normalised on its own, so a
point's place does not depend on the others transformed with it (with ``"sampled"``, a new
point is repelled by one fixed, seeded subset of ``negative_samples`` training voxels). Training
voxels keep their fitted positions (:mod:`.neighbour`). The embedding object is rebuilt from arrays (training
embedding) on load; the neighbour search uses the stored training PCA scores.

Reconstruction: the decoder of :mod:`.decoder` (k-nearest-neighbour regression in the
embedding by default), embedding -> PCA scores -> genes.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._optional import require
from .._progress import step
from .._validation import Bound
from ..exceptions import InputError
from .neighbour import NeighbourEmbedding

__all__ = ["GRADIENT_METHODS", "TSNE", "barnes_hut_kl_divergence", "exact_kl_divergence", "sampled_kl_divergence"]

GRADIENT_METHODS = ("auto", "fft", "bh", "exact", "sampled")
#: highest dimension each method is allowed at
MAX_DIM = {"fft": 2, "bh": 4}
#: "auto" uses the exact gradient on the CPU up to this many training voxels, "sampled" above
EXACT_MAX_N = 6000
#: "sampled": each point's repulsion from this many of its strongest affinities is summed exactly
NEAR_NEIGHBOURS = 48
#: bytes of one block of pairwise terms in the exact gradient
EXACT_BLOCK_BYTES = 64 << 20
_EPSILON = np.finfo(np.float64).eps


class TSNE(NeighbourEmbedding):
    """t-SNE of (voxels, genes) with out-of-sample ``transform`` and a learned inverse.

    Parameters
    ----------
    n_components : int
        Embedding dimension (any: see the module docstring for the gradient method used).
    perplexity : float
        Effective number of neighbours of the training affinities (the study: 30).
    n_iter : int
        Iterations after early exaggeration.
    early_exaggeration_iter : int
        Iterations with exaggerated attraction first.
    early_exaggeration : float
    learning_rate : float or "auto"
        "auto": n_train / exaggeration (Belkina et al. 2019), openTSNE's default.
    negative_gradient_method : {'auto', 'fft', 'bh', 'exact', 'sampled'}
        'auto': 'fft' up to 2-D; beyond, 'exact' on a GPU or on the CPU up to
        :data:`EXACT_MAX_N` training voxels, 'sampled' on the CPU above that. 'fft' needs
        n_components <= 2, 'bh' <= 4.
    negative_samples : int
        'sampled': points the repulsion is estimated from at each iteration (and the fixed
        subset of training voxels a new point is repelled by in ``transform``).
    transform_perplexity : float
        Perplexity of a new point's affinities to the training voxels (openTSNE's default 5).
    transform_n_iter : int
        Optimisation iterations of the out-of-sample placement.
    pca_components : int
        PCA scores t-SNE is run on.
    decoder : {'knn', 'mlp'}
        How ``inverse_transform`` maps the embedding back (see :mod:`.decoder`).
    decoder_components : int
        PCA scores the decoder predicts (its reconstruction ceiling).
    second_decoder : {'mlp', 'knn'} or None
        A second decoder fitted beside ``decoder`` for the other reading of the reconstruction
        error (``inverse_transform_second``): the kNN decoder measures neighbourhoods, the MLP
        decoder compression (:mod:`.decoder`). ``brainzarr fit`` fits the MLP one by default.
    decoder_options : dict, optional
        Keyword arguments of the decoder (e.g. ``{"n_neighbors": 10}`` or ``{"hidden": [256, 256]}``).
    device : {'auto', 'cpu', 'cuda'}
        Where the exact gradient and the MLP decoder run.
    n_jobs : int
        openTSNE threads.
    random_state : int
        Seed of the PCA, the initialisation and the decoder.

    Attributes
    ----------
    embedding_ : ndarray (n_train, n_components)
        The training voxels' embedding (centred).
    train_scores_ : ndarray (n_train, q)
        Their PCA scores.
    pca_mean_, pca_components_ : ndarray
        The PCA the rows are reduced with.
    decoder_ : the fitted decoder.
    kl_divergence_ : float
        Final KL divergence of the training embedding (not restored by ``from_dataset``).
    gradient_method_ : str
        The negative-gradient method used.
    """

    method = "tsne"
    _bounds: ClassVar[dict] = {
        "perplexity": Bound(0, low_open=True),
        "n_iter": Bound(0, integer=True),
        "early_exaggeration_iter": Bound(0, integer=True),
        "early_exaggeration": Bound(0, low_open=True),
        "learning_rate": Bound(0, low_open=True, words=("auto",)),
        "negative_samples": Bound(2, integer=True),
        "transform_perplexity": Bound(0, low_open=True),
        "transform_n_iter": Bound(0, integer=True),
        "pca_components": Bound(1, integer=True),
        "decoder_components": Bound(1, integer=True),
    }
    _placing = ("openTSNE", "t-SNE's transform")

    def __init__(
        self,
        n_components: int = 2,
        *,
        perplexity: float = 30.0,
        n_iter: int = 500,
        early_exaggeration_iter: int = 250,
        early_exaggeration: float = 12.0,
        learning_rate="auto",
        negative_gradient_method: str = "auto",
        negative_samples: int = 1024,
        transform_perplexity: float = 5.0,
        transform_n_iter: int = 250,
        pca_components: int = 50,
        decoder: str = "knn",
        decoder_components: int = 100,
        decoder_options: dict | None = None,
        second_decoder: str | None = None,
        device: str = "auto",
        n_jobs: int = 1,
        random_state: int = 0,
    ):
        self.n_components = n_components
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.early_exaggeration_iter = early_exaggeration_iter
        self.early_exaggeration = early_exaggeration
        self.learning_rate = learning_rate
        self.negative_gradient_method = negative_gradient_method
        self.negative_samples = negative_samples
        self.transform_perplexity = transform_perplexity
        self.transform_n_iter = transform_n_iter
        self.pca_components = pca_components
        self.decoder = decoder
        self.decoder_components = decoder_components
        self.decoder_options = decoder_options
        self.second_decoder = second_decoder
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ gradient methods
    def _gradient_method(self, n_train: int | None = None) -> str:
        """The method a fit on ``n_train`` voxels uses (a fitted model keeps its own:
        ``gradient_method_``)."""
        d, method = int(self.n_components), self.negative_gradient_method
        if method not in GRADIENT_METHODS:
            raise InputError(f"negative_gradient_method must be one of {GRADIENT_METHODS}, got {method!r}")
        if method == "auto":
            if d <= MAX_DIM["fft"]:
                return "fft"
            from .autoencoder import resolve_device

            on_cpu = resolve_device(self.device).type == "cpu"
            return "sampled" if on_cpu and (n_train or 0) > EXACT_MAX_N else "exact"
        if method == "fft" and d > MAX_DIM["fft"]:
            raise InputError(
                f"negative_gradient_method='fft' (openTSNE's interpolation) supports 1-2 "
                f"dimensions, not n_components={d}; use 'exact' (any dimension, O(n^2) per "
                "iteration) or 'auto'"
            )
        if method == "bh" and d > MAX_DIM["bh"]:
            raise InputError(
                f"negative_gradient_method='bh' is limited to {MAX_DIM['bh']} dimensions "
                f"(openTSNE's Barnes-Hut tree has 2^d children per node: unstable, and slower "
                f"than 'exact' above that), not n_components={d}; use 'exact' or 'auto'"
            )
        return method

    def _check_params(self):
        self._gradient_method()

    def _objective(self, method: str):
        if method == "exact":
            from .autoencoder import resolve_device

            return exact_kl_divergence(resolve_device(self.device))
        if method == "sampled":
            from .autoencoder import resolve_device

            return sampled_kl_divergence(
                resolve_device(self.device), int(self.negative_samples), int(self.random_state)
            )
        return barnes_hut_kl_divergence if method == "bh" else method

    # ------------------------------------------------------------------ fitting
    def _embed(self, S):
        openTSNE = require("openTSNE", "t-SNE")
        from openTSNE.affinity import PerplexityBasedNN

        d, n = int(self.n_components), len(S)
        method = self._gradient_method(n)
        if n < 4:
            raise InputError(f"t-SNE needs at least 4 training voxels, got {n}")
        affinities = PerplexityBasedNN(
            S,
            perplexity=min(float(self.perplexity), (n - 1) / 3),
            method="exact",
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )
        total = int(self.early_exaggeration_iter) + int(self.n_iter)
        with step(total, f"t-SNE {d}-D ({method})", unit="it") as bar:
            tsne = openTSNE.TSNE(
                n_components=d,
                learning_rate=self.learning_rate,
                early_exaggeration_iter=int(self.early_exaggeration_iter),
                early_exaggeration=float(self.early_exaggeration),
                n_iter=int(self.n_iter),
                negative_gradient_method=_counted(self._objective(method), bar),
                n_jobs=self.n_jobs,
                random_state=self.random_state,
            )
            embedding = tsne.fit(affinities=affinities, initialization=pca_initialisation(S, d, self.random_state))
        self.gradient_method_ = method
        self.kl_divergence_ = float(embedding.kl_divergence)
        Y = np.asarray(embedding, dtype=np.float64)
        return Y - (Y.max(axis=0) + Y.min(axis=0)) / 2  # centred, as openTSNE's transform wants it

    # ------------------------------------------------------------------ out-of-sample
    def _placement_neighbours(self) -> int:
        return max(int(3 * float(self.transform_perplexity)), 1)

    def _reference(self):
        """The training embedding as an openTSNE reference (rebuilt from arrays, cached)."""
        ref = getattr(self, "_reference_cache", None)
        if ref is None:
            from openTSNE.affinity import Affinities
            from openTSNE.tsne import TSNEEmbedding

            method = self.gradient_method_
            stand_in = Affinities()  # transform needs no training affinities, only the shape
            stand_in.P = _empty_csr(len(self.embedding_))
            ref = TSNEEmbedding(
                self.embedding_.astype(np.float64),
                stand_in,
                negative_gradient_method=self._objective(method),
                n_jobs=self.n_jobs,
                random_state=self.random_state,
            )
            if method == "fft":
                ref.prepare_interpolation_grid()  # now, so concurrent blocks only read it
            self._reference_cache = ref
        return ref

    def _place(self, S, dist, idx):
        from openTSNE.affinity import joint_probabilities_nn
        from openTSNE.tsne import PartialTSNEEmbedding

        ref = self._reference()
        perplexity = min(float(self.transform_perplexity), idx.shape[1] / 3)
        P = joint_probabilities_nn(
            idx,
            dist,
            [perplexity],
            symmetrize=False,
            normalization="point-wise",
            n_reference_samples=len(self.embedding_),
            n_jobs=self.n_jobs,
        )
        init = np.median(self.embedding_[idx].astype(np.float64), axis=1)  # openTSNE's "median" start
        partial = PartialTSNEEmbedding(init, ref, P, **ref.gradient_descent_params)
        partial.optimize(
            n_iter=int(self.transform_n_iter),
            learning_rate=0.1,
            exaggeration=1.5,
            momentum=0.8,
            max_grad_norm=0.25,
            inplace=True,
        )
        return np.asarray(partial, dtype=np.float32)

    def _extra_arrays(self):
        return {"tsne_gradient_method": ((), np.int8(GRADIENT_METHODS.index(self.gradient_method_)))}

    def _set_extra_arrays(self, ds):
        self._reference_cache = None
        self.gradient_method_ = GRADIENT_METHODS[int(ds["tsne_gradient_method"].values)]

    def __getstate__(self):
        state = super().__getstate__()
        state["_reference_cache"] = None
        return state


def pca_initialisation(S: np.ndarray, d: int, random_state: int) -> np.ndarray:
    """openTSNE-style PCA start: the first ``d`` scores with std(col 0) = 1e-4, 1 % jitter.

    Scores are already principal components; dimensions beyond them start as seeded
    N(0, 1e-4^2) noise (the study's 64- and 128-D exceed the usual 50 PCA inputs).
    """
    rng = np.random.default_rng(random_state)
    n = len(S)
    init = rng.normal(0.0, 1e-4, size=(n, d))
    m = min(d, S.shape[1])
    lead = np.asarray(S[:, :m], dtype=np.float64)
    scale = float(np.std(lead[:, 0])) if m else 0.0
    if scale > 0:
        init[:, :m] = lead / scale * 1e-4
    init += rng.normal(0.0, 1e-6, size=init.shape)
    return np.ascontiguousarray(init)


def _counted(objective, bar):
    """Wrap an openTSNE gradient function so each call advances a progress bar."""
    if isinstance(objective, str):
        from openTSNE.tsne import kl_divergence_fft

        objective = {"fft": kl_divergence_fft}[objective]

    def counted(*args, **kwargs):
        bar.update(1)
        return objective(*args, **kwargs)

    return counted


def _empty_csr(n: int):
    import scipy.sparse as sp

    return sp.csr_matrix((n, n))


def exact_kl_divergence(device="cpu"):
    """An openTSNE gradient function with the exact repulsive term, for any dimension.

    The returned callable has openTSNE's signature (embedding, P, dof, reference_embedding,
    should_eval_error, n_jobs, ...) -> (KL divergence, gradient). Without a reference the
    repulsion is normalised by the sum over all pairs (t-SNE); with one (adding new points) each
    point is normalised over the reference points alone, as openTSNE's own methods do.
    """

    def kl_divergence_exact(embedding, P, dof=1, reference_embedding=None, should_eval_error=False, n_jobs=1, **_):
        if dof != 1:
            raise InputError("the exact t-SNE gradient is implemented for dof=1 (Cauchy kernel) only")
        pairwise = reference_embedding is None
        Y = np.ascontiguousarray(embedding, dtype=np.float64)
        R = Y if pairwise else np.ascontiguousarray(reference_embedding, dtype=np.float64)
        repulsion, z = _exact_repulsion(Y, R, pairwise, device)
        sum_Q = float(z.sum())
        gradient = -repulsion / ((sum_Q if pairwise else z[:, None]) + _EPSILON)
        return _add_attraction(gradient, Y, R, P, sum_Q, n_jobs, should_eval_error)

    return kl_divergence_exact


def sampled_kl_divergence(device="cpu", n_samples: int = 1024, random_state: int = 0):
    """An openTSNE gradient function whose repulsion is estimated from a sample of points.

    Fitting (no reference): the repulsion between each point and its :data:`NEAR_NEIGHBOURS`
    strongest affinities (points near it, whose pushes dominate) is summed exactly; the rest is
    estimated from ``n_samples`` points drawn uniformly without replacement (seeded, a new draw
    every iteration), scaled by the number of non-neighbours over the non-neighbours drawn. The
    estimate of each point's repulsion and of the normalisation sum_Q is unbiased, and costs
    O(n x (n_samples + NEAR_NEIGHBOURS) x d) per iteration instead of the exact O(n^2 d), at any
    dimension. The attractive term stays exact (openTSNE's sparse kernel). Adding new points
    (a reference): each is repelled by one fixed, seeded subset of ``n_samples`` reference
    points, normalised over that subset (a ratio estimate), so a point's place does not depend
    on the others transformed with it nor on the order of the calls.
    """
    rng = np.random.default_rng(random_state)
    exact = exact_kl_divergence(device)
    subsets, strongest = {}, {}

    def kl_divergence_sampled(
        embedding, P, dof=1, reference_embedding=None, should_eval_error=False, n_jobs=1, **kwargs
    ):
        if dof != 1:
            raise InputError("the sampled t-SNE gradient is implemented for dof=1 (Cauchy kernel) only")
        Y = np.ascontiguousarray(embedding, dtype=np.float64)
        if reference_embedding is None:
            n = len(Y)
            if n_samples >= n - 1:
                return exact(embedding, P, dof, None, should_eval_error, n_jobs, **kwargs)
            key = (id(P), P.nnz)  # openTSNE rescales P in place (exaggeration): same neighbours
            if key not in strongest:
                strongest.clear()
                strongest[key] = _strongest_neighbours(P, NEAR_NEIGHBOURS)
            drawn = np.zeros(n, dtype=bool)
            drawn[rng.choice(n, size=n_samples, replace=False)] = True
            repulsion, z = _stratified_repulsion(Y, strongest[key], drawn, device)
            sum_Q = float(z.sum())
            gradient = -repulsion / (sum_Q + _EPSILON)
            return _add_attraction(gradient, Y, Y, P, sum_Q, n_jobs, should_eval_error)
        R = np.ascontiguousarray(reference_embedding, dtype=np.float64)
        m = len(R)
        if m not in subsets:
            subsets[m] = (
                np.sort(np.random.default_rng(random_state).choice(m, size=n_samples, replace=False))
                if n_samples < m
                else np.arange(m)
            )
        subset = subsets[m]
        repulsion, z = _exact_repulsion(Y, R[subset], False, device)
        gradient = -repulsion / (z[:, None] + _EPSILON)
        sum_Q = float(z.sum()) * m / len(subset)
        return _add_attraction(gradient, Y, R, P, sum_Q, n_jobs, should_eval_error)

    return kl_divergence_sampled


def _strongest_neighbours(P, k: int):
    """(rows, cols) of each row's ``k`` largest entries of the CSR matrix ``P`` (diagonal left out)."""
    n = P.shape[0]
    rows = np.repeat(np.arange(n), np.diff(P.indptr))
    cols = np.asarray(P.indices)
    data = np.where(rows == cols, -np.inf, np.asarray(P.data, dtype=np.float64))
    order = np.lexsort((-data, rows))  # by row, then strongest first
    rank = np.arange(len(order)) - np.asarray(P.indptr)[rows[order]]
    keep = order[(rank < k) & np.isfinite(data[order])]
    return rows[keep], cols[keep]


def _stratified_repulsion(Y: np.ndarray, near, drawn: np.ndarray, device):
    """Estimates of sum_{j != i} w_ij^2 (y_i - y_j) and z_i = sum_{j != i} w_ij: exact over i's
    ``near`` points (rows, cols: each row's strongest affinities), from the ``drawn`` points
    (boolean mask) for the others."""
    import torch

    n = len(Y)
    rows, cols = near
    degree = np.bincount(rows, minlength=n)
    J = np.flatnonzero(drawn)
    repulsion, z = _exact_repulsion(Y, Y[J], False, device)  # over the drawn points, self included

    Yt = torch.from_numpy(Y).to(device=device, dtype=torch.float32)
    r, c = (torch.from_numpy(a).to(Yt.device) for a in (rows, cols))
    diff = Yt[r] - Yt[c]
    w = 1.0 / (1.0 + (diff * diff).sum(dim=1))
    push = ((w * w)[:, None] * diff).double()
    w = w.double()
    also = torch.from_numpy(drawn[cols]).to(Yt.device)  # near terms the draw counted too
    near_push = torch.zeros((n, Yt.shape[1]), dtype=torch.float64, device=Yt.device).index_add_(0, r, push)
    near_z = torch.zeros(n, dtype=torch.float64, device=Yt.device).index_add_(0, r, w)
    both_push = torch.zeros_like(near_push).index_add_(0, r[also], push[also])
    both_z = torch.zeros_like(near_z).index_add_(0, r[also], w[also])
    near_push, near_z, both_push, both_z = (t.cpu().numpy() for t in (near_push, near_z, both_push, both_z))

    counted = drawn.sum() - np.bincount(rows, weights=drawn[cols], minlength=n) - drawn
    scale = (n - 1 - degree) / np.maximum(counted, 1.0)  # non-near points per non-near point drawn
    z_far = z - both_z - drawn  # w_ii = 1 for a drawn point; its own push is zero
    return near_push + scale[:, None] * (repulsion - both_push), near_z + scale * z_far


def barnes_hut_kl_divergence(
    embedding, P, dof=1, bh_params=None, reference_embedding=None, should_eval_error=False, n_jobs=1, **_
):
    """openTSNE's Barnes-Hut gradient function (``kl_divergence_bh``) minus its warning above 3-D.

    brainzarr uses Barnes-Hut at 4-D on purpose (faster than the exact gradient at 4 mm) and
    caps it there; openTSNE's per-call warning cannot be
    silenced thread-safely while dask transforms blocks in threads.
    """
    from openTSNE import _tsne
    from openTSNE.quad_tree import QuadTree

    if dof != 1:
        raise InputError("brainzarr's t-SNE uses dof=1 (Cauchy kernel) only")
    pairwise = reference_embedding is None
    R = embedding if pairwise else reference_embedding
    gradient = np.zeros_like(embedding, dtype=np.float64, order="C")
    sum_Q = _tsne.estimate_negative_gradient_bh(
        QuadTree(R),
        embedding,
        gradient,
        **(bh_params or {"theta": 0.5}),
        dof=1.0,
        num_threads=n_jobs,
        pairwise_normalization=pairwise,
    )
    return _add_attraction(gradient, embedding, R, P, sum_Q, n_jobs, should_eval_error)


def _add_attraction(gradient, Y, R, P, sum_Q, n_jobs, should_eval_error):
    """Add openTSNE's sparse attractive term to ``gradient``; return (KL divergence, gradient)."""
    from openTSNE import _tsne

    gradient = np.ascontiguousarray(gradient, dtype=np.float64)
    sum_P, kl = _tsne.estimate_positive_gradient_nn(
        P.indices,
        P.indptr,
        P.data,
        np.ascontiguousarray(Y, dtype=np.float64),
        np.ascontiguousarray(R, dtype=np.float64),
        gradient,
        dof=1.0,
        num_threads=n_jobs,
        should_eval_error=should_eval_error,
    )
    if should_eval_error:
        kl += sum_P * np.log(sum_Q + _EPSILON)
    return kl, gradient


def _exact_repulsion(Y: np.ndarray, R: np.ndarray, pairwise: bool, device):
    """sum_j w_ij^2 (y_i - r_j) and z_i = sum_j w_ij with w_ij = 1 / (1 + |y_i - r_j|^2).

    ``pairwise``: R is Y and the j = i terms are left out. Row blocks keep memory at
    :data:`EXACT_BLOCK_BYTES`.
    """
    import torch

    Yt = torch.from_numpy(Y).to(device=device, dtype=torch.float32)
    Rt = Yt if pairwise else torch.from_numpy(R).to(device=device, dtype=torch.float32)
    r_sq = (Rt * Rt).sum(dim=1)
    n, m = len(Yt), len(Rt)
    step = max(1, EXACT_BLOCK_BYTES // (4 * max(m, 1)))
    repulsion = torch.empty_like(Yt)
    z = torch.empty(n, dtype=torch.float64, device=Yt.device)
    for a in range(0, n, step):
        Yb = Yt[a : a + step]
        W = torch.addmm(r_sq[None, :] + (Yb * Yb).sum(dim=1, keepdim=True), Yb, Rt.T, alpha=-2.0)
        W.clamp_(min=0.0).add_(1.0).reciprocal_()
        if pairwise:
            rows = torch.arange(len(Yb), device=Yt.device)
            W[rows, rows + a] = 0.0
        z[a : a + len(Yb)] = W.sum(dim=1, dtype=torch.float64)
        W.mul_(W)
        repulsion[a : a + len(Yb)] = W.sum(dim=1, keepdim=True) * Yb - W @ Rt
    return repulsion.double().cpu().numpy(), z.cpu().numpy()
