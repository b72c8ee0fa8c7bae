"""``brainzarr info``: what a store holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _disk_size(path) -> int:
    if "://" in str(path):  # object storage: one listing
        return int(path.fs.du(path.path))
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def describe(path) -> str:
    from .._atomic import stale_partials
    from ..store import Store, list_groups

    store = Store(path, allow_incomplete=True)
    attrs, ds = store.attrs, store.dataset
    prov = attrs.get("provenance", {})
    src = prov.get("source", {})
    split = ds["split"].values
    lines = [
        f"store       {path}  ({_disk_size(store.path) / 1e6:,.1f} MB on disk)"
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
    groups = list_groups(store)
    if groups:
        lines.append(f"results     {', '.join(groups)}")
    codecs = _codecs(store.path / "expression")
    if codecs:
        lines.append(f"codecs      {codecs}")
    leftovers = [] if store.remote else stale_partials(store.path)
    if leftovers:
        lines.append(
            f"leftovers   {len(leftovers)} scratch folder(s) of interrupted writers "
            f"(e.g. {leftovers[0].relative_to(store.path)}); `brainzarr check --repair` removes them"
        )
    return "\n".join(lines)


def _codecs(array_dir: Path) -> str:
    import json

    try:
        meta = json.loads((array_dir / "zarr.json").read_text())  # a Path or a UPath
    except (OSError, ValueError):
        return ""
    return " + ".join(c.get("name", "?") for c in meta.get("codecs", []))


def register(sub):
    p = sub.add_parser("info", help="describe a store")
    p.add_argument("store")
    from ._args import add_storage_arguments, store_path

    add_storage_arguments(p)
    p.set_defaults(func=lambda args: print(describe(store_path(args))))
