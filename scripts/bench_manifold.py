"""t-SNE and UMAP benchmark: every dim at one resolution, and a 4 mm cost estimate.

Table 1 (``--resolution``, synthetic store, ``--genes`` genes, full default settings: t-SNE
250 + 500 iterations, UMAP's default epochs): per method and dim the gradient method, fit
time, transform time (every voxel), inverse-transform time, test RMSE of the decoder's
reconstruction under the random split, and in brackets on the test voxels that are not
exact copies of a training voxel; the neighbour agreement of out-of-sample placement (share of
a test voxel's 10 nearest training voxels in PCA space that are also its 10 nearest in the
embedding; chance = 10 / n_train); PCA's test RMSE at the same dim for reference.

Table 2 (``--estimate N``): the cost that grows with the number of training voxels, timed at
N training voxels (random 50-D inputs): seconds per t-SNE iteration (FFT at 2-D, Barnes-Hut
and exact at 3-4-D, exact above) and one UMAP fit at 2-D, extrapolated to a full t-SNE run (750 iterations). The PCA
pass in front is the PCA benchmark's (scripts/bench_fit.py).

Examples::

    python scripts/bench_manifold.py --resolution 8 --genes 300            # ~20 min on 2 cores
    python scripts/bench_manifold.py --no-table --estimate 23500           # 4 mm training set
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, dtype=np.float64) - b) ** 2)))


def _agreement(model, X_train, X_new, Z_new, k=10):
    from sklearn.neighbors import NearestNeighbors

    S_tr = model.train_scores_[:, : model.n_inputs_]
    S_new = model._scores(X_new, model.n_inputs_)
    a = NearestNeighbors(n_neighbors=k).fit(S_tr).kneighbors(S_new, return_distance=False)
    b = NearestNeighbors(n_neighbors=k).fit(model.embedding_).kneighbors(Z_new, return_distance=False)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))


def table(args):
    from sklearn.decomposition import PCA as SkPCA

    from brainzarr import build_store, open_store
    from brainzarr.models.tsne import TSNE
    from brainzarr.models.umap_ import UMAP

    store = Path(args.store_dir) / f"manifold-s{args.resolution}-g{args.genes}.zarr"
    if not store.exists():
        build_store(store, resolution=args.resolution, genes=args.genes, random_state=args.seed)
    ds = open_store(store)
    X = np.asarray(ds["expression"].values, dtype=np.float32)
    train = np.asarray(ds["split"].values) == "train"
    Xtr, Xte = X[train], X[~train]
    seen = {r.tobytes() for r in Xtr}
    novel = np.array([r.tobytes() not in seen for r in Xte])
    print(
        f"store {store.name}: {len(X)} voxels ({train.sum()} train, {len(Xte)} test, "
        f"{novel.sum()} of them not copies of a training voxel), {X.shape[1]} genes; "
        f"mean-predictor test RMSE {_rmse(Xtr.mean(axis=0), Xte):.4f}"
    )
    header = (
        f"{'method':6} {'dim':>4} {'gradient':8} {'fit s':>8} {'transf s':>8} {'inv s':>6} "
        f"{'test RMSE (novel)':>18} {'agree@10':>8} {'PCA RMSE':>8}"
    )
    print(header)
    print("-" * len(header))
    for method in args.methods.split(","):
        for dim in [int(d) for d in args.dims.split(",")]:
            model = (TSNE if method == "tsne" else UMAP)(dim, random_state=args.seed)
            t0 = time.perf_counter()
            model.fit(Xtr)
            t1 = time.perf_counter()
            Z = model.transform(X)
            t2 = time.perf_counter()
            R = model.inverse_transform(Z)
            t3 = time.perf_counter()
            Zte, Rte = Z[~train], R[~train]
            pca = SkPCA(min(dim, X.shape[1]), random_state=0).fit(Xtr)
            pca_rmse = _rmse(pca.inverse_transform(pca.transform(Xte)), Xte)
            grad = getattr(model, "gradient_method_", "-")
            print(
                f"{method:6} {dim:>4} {grad:8} {t1 - t0:8.1f} {t2 - t1:8.1f} {t3 - t2:6.1f} "
                f"{_rmse(Rte, Xte):8.4f} ({_rmse(Rte[novel], Xte[novel]):.4f}) "
                f"{_agreement(model, Xtr, Xte[novel], Zte[novel]):8.3f} {pca_rmse:8.4f}",
                flush=True,
            )
    print(f"chance agreement@10: {10 / train.sum():.4f}")


def estimate(n, dims, seed):
    import torch
    import umap
    from openTSNE.affinity import PerplexityBasedNN
    from openTSNE.tsne import kl_divergence_bh, kl_divergence_fft

    from brainzarr.models.tsne import MAX_DIM, exact_kl_divergence

    rng = np.random.default_rng(seed)
    S = rng.normal(size=(n, 50)).astype(np.float32)
    t0 = time.perf_counter()
    P = PerplexityBasedNN(S, perplexity=30, method="exact", random_state=seed).P
    aff_s = time.perf_counter() - t0
    print(
        f"\n{n} training voxels: affinities (exact 90-NN, perplexity 30) {aff_s:.1f} s; torch threads "
        f"{torch.get_num_threads()}"
    )
    print(f"{'t-SNE dim':>9} {'gradient':8} {'s/iter':>8} {'750 iter (est.)':>16}")
    fft = {"n_interpolation_points": 3, "min_num_intervals": 50, "ints_in_interval": 1}
    for dim in dims:
        Y = rng.normal(size=(n, dim)) * 10
        methods = ["fft"] if dim <= MAX_DIM["fft"] else (["bh", "exact"] if dim <= MAX_DIM["bh"] else ["exact"])
        for name in methods:
            reps = 20 if name == "fft" else 2
            t0 = time.perf_counter()
            for _ in range(reps):
                if name == "fft":
                    kl_divergence_fft(Y, P, dof=1, fft_params=fft)
                elif name == "bh":
                    kl_divergence_bh(Y, P, dof=1, bh_params={"theta": 0.5})
                else:
                    exact_kl_divergence(torch.device("cpu"))(Y, P)
            per = (time.perf_counter() - t0) / reps
            print(f"{dim:>9} {name:8} {per:8.3f} {per * 750 / 60:13.1f} min", flush=True)
    t0 = time.perf_counter()
    umap.UMAP(n_neighbors=30, min_dist=0.1, random_state=seed).fit(S)
    print(
        f"UMAP 2-D fit ({n} voxels, default epochs, umap-learn's own neighbour search): "
        f"{time.perf_counter() - t0:.0f} s"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolution", type=int, default=8)
    p.add_argument("--genes", type=int, default=300)
    p.add_argument("--methods", default="tsne,umap")
    p.add_argument("--dims", default="2,4,8,16,32,64,128")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store-dir", default="store")
    p.add_argument("--no-table", action="store_true", help="skip table 1")
    p.add_argument("--estimate", type=int, metavar="N", help="time the N-voxel costs (table 2)")
    args = p.parse_args()
    if not args.no_table:
        table(args)
    if args.estimate:
        estimate(args.estimate, [int(d) for d in args.dims.split(",")], args.seed)


if __name__ == "__main__":
    main()
