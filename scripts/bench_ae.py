"""Auto-encoder data loading vs training: rows/s of the loaders alone and of the model.

For each store: the in-memory loader (after reading the rows once: ``load_s``), the
streaming chunk-shuffled loader (reads of whole row chunks, or ``--read-rows``, in random
order; shuffle buffer; background prefetch) and the network's training consumption
(forward + backward + Adam on batches already on the device) at each code width. The
target is a loader at least 5x faster than training (``ratio`` >= 5 against the fastest
training rate). Peak RSS is the process's maximum so far.

Example::

    python scripts/bench_ae.py store/ahba-4mm.zarr --max-rows 20000
    python scripts/bench_ae.py /tmp/s8.zarr --read-rows 512,4096 --device cuda
"""

from __future__ import annotations

import argparse
import resource
import sys
import time


def peak_rss_gb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+")
    parser.add_argument("--dims", default="2,128", help="code widths whose training rate is timed")
    parser.add_argument("--hidden", default="500,250,125")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--max-rows", type=int, default=20_000, help="time the loaders on at most this many rows of each store (0: all)"
    )
    parser.add_argument("--read-rows", default="", help="streaming read sizes to compare (default: one chunk row)")
    parser.add_argument("--train-batches", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)

    import torch

    from brainzarr.models import AutoEncoder
    from brainzarr.models.loaders import loader_rate
    from brainzarr.store import expression_rows

    if args.threads:
        torch.set_num_threads(args.threads)
    hidden = tuple(int(h) for h in args.hidden.split(",") if h)
    dims = [int(d) for d in args.dims.split(",")]
    read_sizes = [int(r) for r in args.read_rows.split(",") if r] or [None]
    print(
        f"{'store':<24} {'genes':>6} {'what':<14} {'rows':>7} {'load_s':>7} {'rows/s':>10} {'ratio':>6} "
        f"{'peak_GB':>7} {'wall_s':>7}",
        flush=True,
    )
    for path in args.stores:
        X = expression_rows(path)  # whole-row blocks, as fit_store reads them
        name, genes = path.rstrip("/")[-24:], X.shape[1]
        train = {}
        for dim in dims:
            t0 = time.perf_counter()
            ae = AutoEncoder(dim, hidden=hidden, batch_size=args.batch_size, device=args.device)
            train[dim] = ae.training_throughput(genes, n_batches=args.train_batches)
            print(
                f"{name:<24} {genes:>6} {f'train k={dim}':<14} {args.train_batches * args.batch_size:>7} "
                f"{0:>7.1f} {train[dim]:>10,.0f} {'':>6} {peak_rss_gb():>7.2f} {time.perf_counter() - t0:>7.1f}",
                flush=True,
            )
        fastest = max(train.values())
        configs = [("memory", None)] + [("stream", r) for r in read_sizes]
        for mode, read_rows in configs:
            t0 = time.perf_counter()
            r = loader_rate(
                X,
                mode,
                batch_size=args.batch_size,
                max_rows=args.max_rows or None,
                **({"read_rows": read_rows} if mode == "stream" else {}),
            )
            what = mode if mode == "memory" else f"stream/{read_rows or X.chunksize[0]}"
            print(
                f"{name:<24} {genes:>6} {what:<14} {r['rows']:>7} {r['load_s']:>7.1f} {r['rows_per_s']:>10,.0f} "
                f"{r['rows_per_s'] / fastest:>6.1f} {peak_rss_gb():>7.2f} {time.perf_counter() - t0:>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
