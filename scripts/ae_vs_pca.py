"""Auto-encoder vs PCA: train/test reconstruction RMSE per dimension on a store.

Fits scikit-learn's in-memory ``PCA`` and brainzarr's :class:`~brainzarr.models.AutoEncoder`
on the store's training voxels (``split == 'train'``) at each dimension and prints one table
(RMSE on train and test voxels, epochs, best epoch, seconds).

Example (8 mm, 1000 genes; a few minutes on 2 cores)::

    brainzarr build --resolution 8 --genes 1000 --seed 1 --out /tmp/s8g1000.zarr
    python scripts/ae_vs_pca.py /tmp/s8g1000.zarr --dims 2,4,8,16,32,64,128 --max-epochs 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--dims", default="2,4,8,16,32,64,128")
    parser.add_argument("--hidden", default="500,250,125", help="encoder widths, comma-separated")
    parser.add_argument(
        "--widen", action="store_true", help="widen hidden layers narrower than the code to the code's width"
    )
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--split", default="split", help="split coordinate (split, split_random, split_blocked)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--track", type=int, default=0, help="every N epochs, print the current weights' test RMSE (0: never)"
    )
    args = parser.parse_args(argv)

    import torch
    from sklearn.decomposition import PCA

    from brainzarr import open_store
    from brainzarr.models import AutoEncoder

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = open_store(args.store)
    train = (ds[args.split] == "train").values
    X = ds["expression"]
    t0 = time.perf_counter()
    X_train = X.isel(voxel=np.flatnonzero(train)).values
    X_test = X.isel(voxel=np.flatnonzero(~train)).values
    print(
        f"# {args.store}: {X.shape[0]} voxels x {X.shape[1]} genes, {len(X_train)} train / "
        f"{len(X_test)} test ({args.split}); read in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )

    def rmse(A, B):
        return float(np.sqrt(np.mean((A - B) ** 2)))

    print(f"# mean predictor: test RMSE {rmse(X_test, X_train.mean(0)):.5f}")
    hidden = tuple(int(h) for h in args.hidden.split(",") if h)
    header = (
        f"{'dim':>4} {'pca_train':>9} {'pca_test':>9} {'ae_train':>9} {'ae_test':>9} {'ae/pca':>7} "
        f"{'epochs':>6} {'best':>5} {'ae_s':>7}  hidden"
    )
    print(header, flush=True)
    for dim in (int(d) for d in args.dims.split(",")):
        pca = PCA(dim, random_state=args.seed).fit(X_train)
        p_tr = rmse(pca.inverse_transform(pca.transform(X_train)), X_train)
        p_te = rmse(pca.inverse_transform(pca.transform(X_test)), X_test)
        h = tuple(max(w, dim) for w in hidden) if args.widen else hidden
        t0 = time.perf_counter()
        ae = AutoEncoder(
            dim,
            hidden=h,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            max_epochs=args.max_epochs,
            patience=args.patience,
            device="cpu",
            random_state=args.seed,
        )

        def track(model, info, dim=dim, p_te=p_te, t0=t0):
            if args.track and info["epoch"] % args.track == 0:
                now = rmse(model.inverse_transform(model.transform(X_test)), X_test)
                print(
                    f"#   k={dim} epoch {info['epoch']}: val {info['val_loss']:.6f} test RMSE {now:.5f} "
                    f"(PCA {p_te:.5f}) {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )

        ae.fit(X_train, callback=track)
        seconds = time.perf_counter() - t0
        a_tr = rmse(ae.inverse_transform(ae.transform(X_train)), X_train)
        a_te = rmse(ae.inverse_transform(ae.transform(X_test)), X_test)
        print(
            f"{dim:>4} {p_tr:>9.5f} {p_te:>9.5f} {a_tr:>9.5f} {a_te:>9.5f} {a_te / p_te:>7.3f} "
            f"{ae.n_epochs_:>6} {ae.best_epoch_:>5} {seconds:>7.1f}  {','.join(map(str, h))}",
            flush=True,
        )


if __name__ == "__main__":
    main()
