"""Fit benchmark: every method x dim x resolution through ``fit_store``, PCA against scikit-learn.

One row per configuration: fit time, transform + reconstruction time (the streamed pass that
writes embedding and reconstruction and computes the RMSE), peak RSS and RMSE. Each
configuration runs in its own subprocess; its peak RSS is that child's ``ru_maxrss`` (from
``os.wait4``), so the numbers do not mix. PCA is run side by side with scikit-learn's
in-memory ``PCA`` (``svd_solver='full'``: the exact reference) and ``IncrementalPCA``
(``partial_fit`` over the same row blocks): a second table gives their time and RMSE ratios.

Stores are synthetic (``brainzarr build --source synthetic``), built once into ``--store-dir``
and reused.

Examples::

    python scripts/bench_fit.py --resolutions 8 --genes 300 --dims 2,16,128       # a minute
    python scripts/bench_fit.py --resolutions 8,4 --genes all --methods pca,nmf,kpca,ae
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINES = ("sklearn", "ipca")


# ----------------------------------------------------------------------------- workers
def _train_test(store):
    import numpy as np

    from brainzarr import open_store

    ds = open_store(store)
    split = np.asarray(ds["split"].values)
    return ds["expression"].data, split == "train", split == "test"


def _stream_rmse(model, X, rows, block_rows=4096):
    """Test RMSE of an in-memory model's reconstruction, streamed over blocks of ``rows``."""
    import numpy as np

    sse, count = 0.0, 0
    idx = np.flatnonzero(rows)
    for a in range(0, len(idx), block_rows):
        block = np.asarray(X[idx[a : a + block_rows]].compute(), dtype=np.float32)
        sse += float(np.sum((model.inverse_transform(model.transform(block)) - block) ** 2, dtype=np.float64))
        count += block.size
    return float(np.sqrt(sse / count))


def worker_fit(cfg) -> dict:
    from brainzarr.models.pipeline import fit_store

    result = fit_store(
        cfg["store"],
        cfg["method"],
        cfg["dim"],
        overwrite=True,
        random_state=cfg["seed"],
        write_reconstruction=cfg["reconstruction"],
        progress=False,
        **cfg["params"],
    )
    train, test = (float(v) for v in result["rmse"].values)
    return {
        "fit_s": result.attrs["fit_seconds"],
        "transform_s": result.attrs["transform_seconds"],
        "train_rmse": train,
        "test_rmse": test,
        "n_train": result.attrs["n_train"],
    }


def worker_sklearn(cfg) -> dict:
    """scikit-learn's exact in-memory PCA on the training rows (loaded whole)."""
    import numpy as np
    from sklearn.decomposition import PCA

    X, train, test = _train_test(cfg["store"])
    start = time.perf_counter()
    Xtr = np.asarray(X[np.flatnonzero(train)].compute(), dtype=np.float32)
    model = PCA(cfg["dim"], svd_solver="full").fit(Xtr)
    fit_s = time.perf_counter() - start
    del Xtr
    start = time.perf_counter()
    test_rmse = _stream_rmse(model, X, test)
    return {
        "fit_s": fit_s,
        "transform_s": time.perf_counter() - start,
        "test_rmse": test_rmse,
        "n_train": int(train.sum()),
    }


def worker_ipca(cfg) -> dict:
    """scikit-learn's IncrementalPCA, ``partial_fit`` over the store's training row blocks."""
    import numpy as np
    from sklearn.decomposition import IncrementalPCA

    from brainzarr.models.base import iter_row_blocks

    X, train, test = _train_test(cfg["store"])
    batch = max(int(cfg["ipca_batch"]), cfg["dim"])
    model = IncrementalPCA(cfg["dim"], batch_size=batch)
    start = time.perf_counter()
    pending = None
    for block in iter_row_blocks(X[train]):
        block = block if pending is None else np.concatenate([pending, block])
        cut = len(block) - len(block) % batch
        for a in range(0, cut, batch):
            model.partial_fit(block[a : a + batch])
        pending = block[cut:] if cut < len(block) else None
    if pending is not None and len(pending) >= cfg["dim"]:
        model.partial_fit(pending)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    test_rmse = _stream_rmse(model, X, test)
    return {
        "fit_s": fit_s,
        "transform_s": time.perf_counter() - start,
        "test_rmse": test_rmse,
        "n_train": int(train.sum()),
    }


WORKERS = {"fit": worker_fit, "sklearn": worker_sklearn, "ipca": worker_ipca}


def run_worker(cfg_path: str) -> None:
    cfg = json.loads(Path(cfg_path).read_text())
    out = WORKERS[cfg["kind"]](cfg)
    Path(cfg["result"]).write_text(json.dumps(out))


# ----------------------------------------------------------------------------- driver
def run_in_child(cfg: dict, timeout: float | None) -> dict:
    """Run one configuration in a fresh Python process; its results plus wall time and peak RSS."""
    import threading

    with tempfile.TemporaryDirectory(prefix="bench_fit_") as tmp:
        cfg = {**cfg, "result": str(Path(tmp) / "result.json")}
        cfg_path = Path(tmp) / "cfg.json"
        cfg_path.write_text(json.dumps(cfg))
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--_worker", str(cfg_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        try:
            err_text = proc.stderr.read()
            # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all children)
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.kill()
            raise
        finally:
            if timer:
                timer.cancel()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        row = {"wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024}
        if code != 0:
            lines = [ln for ln in err_text.strip().splitlines() if ln.strip()]
            reason = "timed out" if timeout and code < 0 else (lines[-1] if lines else f"exit code {code}")
            return {**row, "error": reason[:160]}
        return {**row, **json.loads(Path(cfg["result"]).read_text())}


def ensure_store(store_dir: Path, resolution: int, genes: str, seed: int) -> Path:
    path = store_dir / f"bench-s{resolution}-g{genes}-seed{seed}.zarr"
    if not (path / "zarr.json").exists() or not _complete(path):
        cmd = [
            sys.executable,
            "-m",
            "brainzarr.cli",
            "build",
            "--resolution",
            str(resolution),
            "--seed",
            str(seed),
            "--out",
            str(path),
            "--overwrite",
        ]
        if genes != "all":
            cmd += ["--genes", genes]
        print(f"building {path} ...", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def _complete(path: Path) -> bool:
    try:
        return bool(json.loads((path / "zarr.json").read_text())["attributes"].get("build_complete"))
    except (OSError, KeyError, ValueError):
        return False


def extra_rows(store: Path, resolution: int, args) -> list[dict]:
    """The auto-encoder's training rate per code width next to its loaders' rates alone
    (in memory and streaming), when ``ae`` is among the methods or ``--loaders`` is given."""
    if "ae" not in args.methods.split(",") and not args.loaders:
        return []
    from brainzarr import open_store
    from brainzarr.models.loaders import throughput_rows
    from brainzarr.store import expression_rows

    dims = [int(d) for d in args.dims.split(",")]
    train = open_store(store)["split"].values == "train"
    # the rows fit_store trains on, read the way it reads them; loader rates are those of a
    # second epoch (steady state), the streaming loader's first epoch gets a row of its own
    rows = []
    for row in throughput_rows(
        expression_rows(store, mask=train), dims=dims, device=getattr(args, "device", None) or "auto", max_rows=20_000
    ):
        row.setdefault("res_mm", resolution)
        rows.append(row)
        if row["method"] == "ae[loader:stream]":
            fastest = row["rows_per_s"] / row["ratio"]
            rows.append(
                {
                    **row,
                    "method": "ae[stream:1st]",
                    "rows_per_s": row["first_epoch_rows_per_s"],
                    "ratio": row["first_epoch_rows_per_s"] / fastest,
                }
            )
    return rows


#: (column, width, format of a value)
COLUMNS = [
    ("method", 18, "<18"),
    ("dim", 4, ">4"),
    ("res_mm", 6, ">6"),
    ("genes", 6, ">6"),
    ("n_train", 7, ">7"),
    ("fit_s", 8, ">8.2f"),
    ("transform_s", 11, ">11.2f"),
    ("rows_per_s", 10, ">10.0f"),
    ("ratio", 6, ">6.1f"),
    ("peak_rss_mb", 11, ">11.0f"),
    ("train_rmse", 10, ">10.5f"),
    ("test_rmse", 9, ">9.5f"),
]


def format_row(row: dict) -> str:
    cells = [f"{'-':>{width}}" if row.get(name) is None else format(row[name], fmt) for name, width, fmt in COLUMNS]
    return " ".join(cells) + (f"  ERROR: {row['error']}" if "error" in row else "")


def header() -> str:
    return " ".join(f"{name:<{width}}" if name == "method" else f"{name:>{width}}" for name, width, _ in COLUMNS)


def comparison_table(rows: list[dict]) -> list[str]:
    """PCA against scikit-learn, per resolution and dim: time and test-RMSE ratios."""
    lines = [
        f"{'ours':<20} {'res_mm':>6} {'dim':>4} {'ours_fit_s':>10} {'skl_fit_s':>9} {'ipca_fit_s':>10} "
        f"{'ipca/ours':>9} "
        f"{'skl/ours':>8} {'ours/skl_rmse':>13} {'ipca/skl_rmse':>13} {'ipca/ours_rmse':>14}"
    ]
    # the loader rows (dim None) have no place here
    by = {
        (r["method"], r["res_mm"], r["dim"]): r
        for r in rows
        if "error" not in r and r["method"].startswith("pca") and r.get("dim") is not None
    }

    def ratio(a, b, key, digits=3):
        return f"{a[key] / b[key]:.{digits}f}" if a and b and b.get(key) else "-"

    def seconds(r):
        return f"{r['fit_s']:.2f}" if r else "-"

    for (method, res, dim), ours in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        if not method.startswith("pca") or method[4:-1] in BASELINES:
            continue
        skl, ipca = by.get(("pca[sklearn]", res, dim)), by.get(("pca[ipca]", res, dim))
        lines.append(
            f"{method:<20} {res:>6} {dim:>4} {seconds(ours):>10} {seconds(skl):>9} {seconds(ipca):>10} "
            f"{ratio(ipca, ours, 'fit_s', 1):>9} {ratio(skl, ours, 'fit_s', 1):>8} "
            f"{ratio(ours, skl, 'test_rmse', 4):>13} {ratio(ipca, skl, 'test_rmse', 4):>13} "
            f"{ratio(ipca, ours, 'test_rmse', 4):>14}"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="8", help="grid spacings in mm, e.g. 8,4,2")
    parser.add_argument("--genes", default="300", help="number of genes, or 'all' (15,633)")
    parser.add_argument("--dims", default="2,4,8,16,32,64,128")
    parser.add_argument("--methods", default="pca,kpca,nmf", help="methods of brainzarr.models.METHODS")
    parser.add_argument(
        "--baselines",
        default="sklearn,ipca",
        help="PCA baselines side by side: sklearn (in-memory, exact), ipca (IncrementalPCA); '' for none",
    )
    parser.add_argument("--ipca-batch", type=int, default=1024, help="IncrementalPCA batch rows (>= dim)")
    parser.add_argument("--max-epochs", type=int, help="for methods that train in epochs (nmf, ae)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), help="torch device (methods that take one)")
    parser.add_argument("--option", action="append", metavar="[METHOD.]NAME=VALUE", help="estimator parameter")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="METHOD.NAME=VALUE",
        help="also run METHOD with this parameter changed, labelled METHOD[NAME=VALUE] "
        "(e.g. pca.n_power_iter=2: fewer passes, side by side with the default)",
    )
    parser.add_argument(
        "--loaders",
        action="store_true",
        help="time the auto-encoder's loaders next to its training rate (always with ae)",
    )
    parser.add_argument("--no-reconstruction", action="store_true", help="do not write reconstructions")
    parser.add_argument("--store-dir", default=str(Path(tempfile.gettempdir()) / "brainzarr-bench"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, help="seconds per configuration (default: none)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        return run_worker(args._worker)

    from brainzarr.commands.fit import method_params, parse_options
    from brainzarr.models.pipeline import model_class

    methods = [m for m in args.methods.split(",") if m]
    dims = [int(d) for d in args.dims.split(",") if d]
    baselines = [b for b in args.baselines.split(",") if b]
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        parser.error(f"unknown baselines {sorted(unknown)}; choose from {BASELINES}")
    options = parse_options(args.option)
    params = {m: method_params(m, args, options) for m in methods}
    for m in methods:
        model_class(m)
    variants: dict = {}
    for spec in args.variant:
        for method, change in parse_options([spec]).items():
            if method not in methods:
                parser.error(f"--variant {spec!r}: name one of the --methods ({', '.join(methods)})")
            label = f"{method}[{spec.partition('.')[2]}]"
            variants.setdefault(method, []).append((label, change))
    store_dir = Path(args.store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    rows = []
    print(header(), flush=True)
    for res in (int(r) for r in args.resolutions.split(",")):
        store = ensure_store(store_dir, res, args.genes, args.seed)
        n_genes = _n_genes(store)
        base = {
            "store": str(store),
            "seed": args.seed,
            "reconstruction": not args.no_reconstruction,
            "ipca_batch": args.ipca_batch,
        }
        for method in methods:
            for dim in dims:
                runs = [("fit", method, params[method])]
                runs += [("fit", label, params[method] | change) for label, change in variants.get(method, [])]
                runs += [(b, f"pca[{b}]", params[method]) for b in baselines] if method == "pca" else []
                for kind, label, run_params in runs:
                    cfg = {**base, "kind": kind, "method": method, "dim": dim, "params": run_params}
                    row = {
                        "method": label,
                        "dim": dim,
                        "res_mm": res,
                        "genes": n_genes,
                        **run_in_child(cfg, args.timeout),
                    }
                    if row.get("n_train") and row.get("fit_s"):
                        row["rows_per_s"] = row["n_train"] / row["fit_s"]
                    rows.append(row)
                    print(format_row(row), flush=True)
        for row in extra_rows(store, res, args):
            rows.append({"res_mm": res, "genes": n_genes, **row})
            print(format_row(rows[-1]), flush=True)
    if any(r["method"].startswith("pca") for r in rows) and baselines:
        print("\nPCA vs scikit-learn (time ratios: baseline fit time / ours; RMSE ratios: test RMSE / sklearn's)")
        print("\n".join(comparison_table(rows)))
    print(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _n_genes(store: Path) -> int:
    meta = json.loads((store / "expression" / "zarr.json").read_text())
    return int(meta["shape"][1])


if __name__ == "__main__":
    main()
