"""``brainzarr info``: what a store holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _disk_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def describe(path) -> str:
    from ..store import check_schema, list_groups, open_store

    attrs = check_schema(path)
    ds = open_store(path, allow_incomplete=True)
    prov = attrs.get("provenance", {})
    src = prov.get("source", {})
    split = ds["split"].values
    lines = [
        f"store       {path}  ({_disk_size(path) / 1e6:,.1f} MB on disk)"
        + ("" if attrs.get("build_complete") else "  [INCOMPLETE: run the build again to resume]"),
        f"grid        {attrs['grid_shape']} at {attrs['resolution_mm']:g} mm, {attrs['space']} ({attrs.get('mask')})",
        f"expression  {ds.sizes['voxel']:,} voxels x {ds.sizes['gene']:,} genes, chunks "
        f"{tuple(c[0] for c in ds['expression'].chunks)}",
        f"source      {src.get('name')}  {src.get('n_samples', '?')} samples, "
        f"donors {', '.join(src.get('donors', []))}",
        f"assignment  {prov.get('assignment')}",
        f"split       {prov.get('split', {}).get('scheme')}: {int(np.sum(split == 'train')):,} train / "
        f"{int(np.sum(split == 'test')):,} test (seed {prov.get('split', {}).get('seed')})",
        f"genes       {', '.join(ds['gene'].values[:8].tolist())}{' ...' if ds.sizes['gene'] > 8 else ''}",
    ]
    groups = list_groups(path)
    if groups:
        lines.append(f"results     {', '.join(groups)}")
    return "\n".join(lines)


def register(sub):
    p = sub.add_parser("info", help="describe a store")
    p.add_argument("store")
    p.set_defaults(func=lambda args: print(describe(args.store)))
