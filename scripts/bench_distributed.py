"""Local threads, a LocalCluster of process workers, and a store on object storage, side by side:
build and PCA fit at 4 mm with all genes (wall time, the client's peak RSS, the workers').

    python scripts/bench_distributed.py                     # 4 mm, all genes, PCA k = 16
    python scripts/bench_distributed.py --resolution 8 --genes 2000

Configurations, each in a fresh client process:

* ``local``: the local threaded scheduler (brainzarr's default);
* ``cluster``: ``distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``:
  tasks carry row blocks' coordinates, workers read and write the chunks;
* ``s3``: local threads, the store on an S3-compatible server on 127.0.0.1 (moto's server mode,
  in memory; a real object store adds network latency and bandwidth limits this does not show).

Prints a Markdown table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(cfg: dict) -> dict:
    import brainzarr

    where = cfg["store"]
    options = cfg.get("storage_options") or {}
    client = None
    if cfg["mode"] == "cluster":
        from distributed import Client, LocalCluster

        client = Client(
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1")
        )
    out = {}
    try:
        with brainzarr.set_options(client=client, progress=False):
            t0 = time.perf_counter()
            if cfg["step"] == "build":
                brainzarr.build_store(
                    where, resolution=cfg["resolution"], genes=cfg["genes"], random_state=0, storage_options=options
                )
            else:
                store = brainzarr.Store(where, storage_options=options)
                result = brainzarr.fit_store(store, "pca", cfg["k"], overwrite=True, write_reconstruction=False)
                out["test_rmse"] = float(result["rmse"].values[1])
            out["wall_s"] = time.perf_counter() - t0
        if client is not None:
            peaks = client.run(_peak_mb)
            out["worker_peak_mb"] = max(peaks.values())
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            cluster.close()
    out["client_peak_mb"] = _peak_mb()
    return out


def _s3_server():
    from moto.server import ThreadedMotoServer

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child")
    p.add_argument("--resolution", type=int, default=4)
    p.add_argument("--genes", default="all")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--modes", default="local,cluster,s3")
    p.add_argument("--work", default="store/bench-distributed")
    p.add_argument("--out", default="bench-out/bench_distributed.json")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))), flush=True)
        return
    genes = None if args.genes == "all" else int(args.genes)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    server = None
    env = dict(os.environ)
    try:
        for mode in args.modes.split(","):
            cfg = {"mode": mode, "resolution": args.resolution, "genes": genes, "k": args.k}
            if mode == "s3":
                server, endpoint = _s3_server()
                import s3fs

                env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
                os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
                s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("bench")
                cfg.update(store="s3://bench/s.zarr", storage_options={"endpoint_url": endpoint})
            else:
                path = work / f"{mode}.zarr"
                if path.exists():
                    shutil.rmtree(path)
                cfg["store"] = str(path)
            for step in ("build", "fit"):
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(dict(cfg, step=step))],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if proc.returncode:
                    raise RuntimeError(proc.stderr[-3000:])
                row = json.loads(proc.stdout.strip().splitlines()[-1]) | {"mode": mode, "step": step}
                rows.append(row)
                print(json.dumps(row), flush=True)
            if server is not None:
                server.stop()
                server = None
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    table = [
        f"*{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({platform.machine()}); {args.resolution} mm, "
        f"{'all' if genes is None else genes} genes; PCA k = {args.k} without reconstruction*",
        "",
        "| where | step | wall s | client peak RSS MB | worker peak RSS MB | test RMSE |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        worker = f"{r['worker_peak_mb']:.0f}" if "worker_peak_mb" in r else "-"
        rmse = f"{r['test_rmse']:.5f}" if "test_rmse" in r else "-"
        table.append(
            f"| {r['mode']} | {r['step']} | {r['wall_s']:.1f} | {r['client_peak_mb']:.0f} | {worker} | {rmse} |"
        )
    print("\n".join(table))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "table": table}, indent=1))


if __name__ == "__main__":
    main()
