"""How much a blocked split leaks, and how wide its buffer must be: the test RMSE of the
nearest-training-voxel predictor (each test voxel predicted by the training voxel nearest to it
in MNI space) as the buffer around the test cubes grows. A leaking split lets that predictor
copy a neighbour across a cube face; as the buffer widens the error rises, then flattens once
the copies are gone. The default buffer is where it has flattened.

    python scripts/leak_curve.py store/s8.zarr store/s4.zarr --genes 1000

Prints a Markdown table per store (buffer in voxels and mm, voxels lost to the buffer, test
RMSE, test voxels whose nearest training voxel is an exact copy) and the narrowest buffer that
leaves no copies. Past that the error still rises, slowly: that is the data's own smoothness
(the synthetic fields' 25 mm length scale), which no split removes and none should.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.spatial import cKDTree

import brainzarr
from brainzarr.preprocess import blocked_split, default_block_mm


def curve(store, genes: int, max_voxels: int = 8, random_state: int = 0, block_voxels: int | None = None):
    ds = brainzarr.open_store(store)
    res = float(ds.attrs["resolution_mm"])
    xyz = np.column_stack([ds[c].values for c in "xyz"])
    idx = np.linspace(0, ds.sizes["gene"] - 1, min(genes, ds.sizes["gene"])).astype(int)
    values = ds["expression"].isel(gene=idx).values
    block = default_block_mm(res) if block_voxels is None else block_voxels * res
    rows = []
    for n in range(0, max_voxels + 1):
        labels = blocked_split(xyz, block_mm=block, random_state=random_state, buffer_mm=n * res)
        train, test = labels == "train", labels == "test"
        if train.mean() < 0.3:  # the buffer has eaten the training set: stop
            break
        _, nearest = cKDTree(xyz[train]).query(xyz[test], k=1)
        err = values[test] - values[train][nearest]
        copies = float(np.mean(np.all(np.abs(err) < 1e-6, axis=1)))  # test voxels with an exact copy in training
        rows.append((n, n * res, float((labels == "buffer").mean()), float(np.sqrt(np.mean(err**2))), copies))
    suggested = next((r[0] for r in rows if r[4] < 0.01), rows[-1][0])
    return res, block, rows, suggested


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stores", nargs="+")
    p.add_argument("--genes", type=int, default=1000)
    p.add_argument("--max-voxels", type=int, default=8)
    p.add_argument("--block-voxels", type=int, help="cube edge in voxels (default: brainzarr's default cubes)")
    args = p.parse_args(argv)
    print(f"*{time.strftime('%Y-%m-%d')}; nearest-training-voxel predictor, {args.genes} genes*\n")
    for store in args.stores:
        res, block, rows, suggested = curve(store, args.genes, args.max_voxels, block_voxels=args.block_voxels)
        assignment = brainzarr.open_store(store).attrs["provenance"]["assignment"]["method"]
        print(f"**{store}** ({res:g} mm, {assignment}, cubes of {block:g} mm)\n")
        print(
            "| buffer (voxels) | buffer (mm) | voxels in the buffer | test RMSE | test voxels with a copy in training |"
        )
        print("|---:|---:|---:|---:|---:|")
        for n, mm, lost, rmse, copies in rows:
            print(f"| {n} | {mm:g} | {lost:.1%} | {rmse:.5f} | {copies:.1%} |")
        print(f"\nno copies left (< 1 %) from {suggested} voxels ({suggested * res:g} mm)\n", flush=True)


if __name__ == "__main__":
    main()
