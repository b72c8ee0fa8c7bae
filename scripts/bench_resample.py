"""How close, and how fast, each interpolation of ``from_nifti`` reads a fine image onto a store's
grid, against the exact mean of the image over each voxel (the volume-weighted box mean).

    python scripts/bench_resample.py                      # 1, 1.5 and 3 mm images onto 4 mm
    python scripts/bench_resample.py --resolution 8 --images 2:0,2.5:0.4

Each image holds uniform noise at its own resolution (the case where sampling at voxel centres
aliases most) on a grid parallel to the store's, its origin shifted by the given millimetres
from the store grid's corner (``1:0``: 1 mm voxels whose centres the 4 mm grid's share, as
nilearn's MNI152 grids do). The reference is computed here in millimetres, axis by axis, from
the two grids' voxel boxes, independently of brainzarr. Prints a Markdown table (image x
interpolation x wall x error against the box mean) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path


def _overlaps(centres, side, image_centres, image_side):
    """(grid voxels, image voxels) along one axis: the fraction of each grid voxel's extent in
    each image voxel's."""
    import numpy as np

    lo = np.maximum(centres[:, None] - side / 2, image_centres[None] - image_side / 2)
    hi = np.minimum(centres[:, None] + side / 2, image_centres[None] + image_side / 2)
    return np.clip(hi - lo, 0, None) / side


def box_mean(data, image_affine, grid):
    """The exact mean of ``data`` over each voxel of ``grid`` (diagonal affines), the part of a
    voxel outside the image left out."""
    import numpy as np

    total, inside = data.astype(np.float64), np.ones(data.shape)
    for a in range(3):
        side, image_side = grid.affine[a, a], image_affine[a, a]
        share = _overlaps(
            grid.affine[a, 3] + side * np.arange(grid.shape[a]),
            abs(side),
            image_affine[a, 3] + image_side * np.arange(data.shape[a]),
            abs(image_side),
        )
        total = np.moveaxis(np.tensordot(share, total, axes=([1], [a])), 0, a)
        inside = np.moveaxis(np.tensordot(share, inside, axes=([1], [a])), 0, a)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / inside)[tuple(grid.ijk.T)]


def measure(resolution: float, image_mm: float, shift_mm: float, interpolations, repeats: int, seed: int) -> list:
    import nibabel as nib
    import numpy as np

    from brainzarr import from_nifti
    from brainzarr.grid import mni152_grid

    grid = mni152_grid(resolution)
    margin = 2 * image_mm
    shape = tuple(int(np.ceil((n * resolution + 2 * margin) / image_mm)) for n in grid.shape)
    affine = np.diag([image_mm, image_mm, image_mm, 1.0])
    affine[:3, 3] = grid.affine[:3, 3] - margin + shift_mm
    data = np.random.default_rng(seed).random(shape, dtype=np.float32)
    img = nib.Nifti1Image(data, affine)
    reference = box_mean(data, affine, grid)
    rows = []
    for interpolation in interpolations:
        walls = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                values = from_nifti(img, grid, interpolation=interpolation, check_space=False).values
            walls.append(time.perf_counter() - t0)
        held = np.isfinite(values) & np.isfinite(reference)
        error = np.abs(values[held].astype(np.float64) - reference[held])
        rows.append(
            {
                "image_mm": image_mm,
                "shift_mm": shift_mm,
                "interpolation": interpolation,
                "wall_s": min(walls),
                "max_abs_error": float(error.max()),
                "mean_abs_error": float(error.mean()),
                "box_mean_sd": float(reference[held].std()),
                "voxels": int(held.sum()),
            }
        )
    return rows


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=float, default=4, help="the store grid's voxel size (mm)")
    p.add_argument("--images", default="1:0,1.5:0.3,3:0.7", help="image voxel size:origin shift (mm), ...")
    p.add_argument("--interpolations", default="mean,linear,nearest")
    p.add_argument("--repeats", type=int, default=3, help="the fastest of this many reads is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench-out/bench_resample.json")
    args = p.parse_args(argv)

    rows = []
    for item in args.images.split(","):
        size, _, shift = item.partition(":")
        rows += measure(
            args.resolution, float(size), float(shift or 0), args.interpolations.split(","), args.repeats, args.seed
        )
    print(f"\nonto the {args.resolution:g} mm MNI152 grid, {platform.node()}, {time.strftime('%Y-%m-%d')}\n")
    print("| image | interpolation | wall s | max abs error | mean abs error | box mean sd |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['image_mm']:g} mm, shift {r['shift_mm']:g} mm | {r['interpolation']} | {r['wall_s']:.2f} | "
            f"{r['max_abs_error']:.2g} | {r['mean_abs_error']:.2g} | {r['box_mean_sd']:.3f} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"resolution": args.resolution, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
