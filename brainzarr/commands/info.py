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
    from ..store import Store, list_groups, read_group, results_by_split

    store = Store(path, allow_incomplete=True)
    attrs, ds = store.attrs, store.dataset
    prov = attrs.get("provenance", {})
    src = prov.get("source", {})
    split = ds["split"].values
    lines = [
        f"store       {path}  ({_disk_size(store.path) / 1e6:,.1f} MB on disk)"
        + ("" if attrs.get("build_complete") else "  [INCOMPLETE: run the build again to resume]"),
        f"grid        {attrs['grid_shape']} at {attrs['resolution_mm']:g} mm, {attrs['space']} ({attrs.get('mask')})",
        f"expression  {ds.sizes['voxel']:,} voxels x {ds.sizes['gene']:,} genes",
        f"storage     {_storage(store)}",
        f"source      {_source(src)}",
        f"assignment  {_settings(prov.get('assignment') or {})}",
        f"split       {prov.get('split', {}).get('scheme')}: {int(np.sum(split == 'train')):,} train / "
        f"{int(np.sum(split == 'test')):,} test (seed {prov.get('split', {}).get('seed')})",
        f"genes       {', '.join(ds['gene'].values[:8].tolist())}{' ...' if ds.sizes['gene'] > 8 else ''}",
    ]
    groups = list_groups(store, prefix=None)
    # the fitted representations by split, then groups written under names of one's own
    results = results_by_split(g for g in groups if not g.startswith("evaluation/"))
    if results:
        lines.append(f"results     {results[0]}")
        lines += [f"            {line}" for line in results[1:]]
    if "evaluation/prediction" in groups:  # the latest, kept for the report
        sizes = read_group(store, "evaluation/prediction").sizes
        lines.append(
            f"evaluation  {sizes.get('representation', 0):,} representations x {sizes.get('target', 0):,} target "
            "maps, the latest saved (`brainzarr report` shows it)"
        )
    leftovers = [] if store.remote else stale_partials(store.path)
    if leftovers:
        lines.append(
            f"leftovers   {len(leftovers)} scratch folder(s) of interrupted writers "
            f"(e.g. {leftovers[0].relative_to(store.path)}); `brainzarr check --repair` removes them"
        )
    return "\n".join(lines)


def _source(src: dict) -> str:
    """'synthetic  3,702 samples, donors 9861, ...'; a region table's regions and files instead."""
    n = src.get("n_samples")
    count = f"{n:,}" if isinstance(n, int) else "?"
    if src.get("name") == "parcellated":
        options = src.get("options", {})
        return f"parcellated  {count} regions of {options.get('table')} on the atlas {options.get('atlas')}"
    donors = ", ".join(sorted(src.get("donors", []), key=_donor_order))
    mirror = src.get("options", {}).get("lr_mirror")  # abagen's: the count includes the mirror images
    mirrored = f" (with their left-right mirror images: lr_mirror={mirror})" if mirror else ""
    return f"{src.get('name')}  {count} samples{mirrored}, donors {donors}"


def _donor_order(donor: str):
    return (0, int(donor), "") if str(donor).isdigit() else (1, 0, str(donor))  # as abagen: 9861 first


def _settings(settings: dict) -> str:
    """{'method': 'idw', 'k': 10} -> 'idw, k=10'; settings that are themselves tables (an INR's
    hyper-parameters) named only, as the store's provenance holds them whole."""
    plain = {k: v for k, v in settings.items() if k != "method" and not isinstance(v, (dict, list))}
    rest = [f"{k}={v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}" for k, v in plain.items()]
    nested = [k for k, v in settings.items() if isinstance(v, (dict, list))]
    text = ", ".join([str(settings.get("method", "?")), *rest])
    return text + (f"; {', '.join(nested)}: in the store's provenance" if nested else "")


def _storage(store) -> str:
    """How ``expression`` is stored: packing, codecs, chunks and shards (from its metadata)."""
    from .._location import open_group
    from .._zarr import quiet_zarr

    with quiet_zarr():
        array = open_group(store.path)["expression"]
    layout = store.provenance.get("layout") or {}
    if np.dtype(array.dtype) == np.uint16 and "value_range" in layout:
        low, high = layout["value_range"]
        packing = f"uint16 (steps of 1/65,535 over [{low:g}, {high:g}], read as float32)"
    else:
        packing = str(np.dtype(array.dtype))
    codecs = " + ".join(type(c).__name__.removesuffix("Codec").lower() for c in array.compressors) or "uncompressed"
    rows, cols = array.chunks
    files = array.shards or array.chunks
    n_files = int(np.prod([-(-n // s) for n, s in zip(array.shape, files)]))
    text = f"{packing}, {codecs}, chunks of {rows:,} voxels x {cols:,} genes"
    if array.shards is None:
        return f"{text}, a file each ({n_files:,})"
    return f"{text} in {n_files:,} shard file{'s' if n_files > 1 else ''} of {files[0]:,} x {files[1]:,}"


def register(sub):
    p = sub.add_parser("info", help="describe a store")
    from ._args import add_storage_arguments, add_store_argument, store_path

    add_store_argument(p)
    add_storage_arguments(p)
    p.set_defaults(func=lambda args: print(describe(store_path(args))))
