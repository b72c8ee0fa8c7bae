"""``brainzarr export``: any voxel-indexed array of a store -> NIfTI."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..exceptions import InputError, ResultNotFoundError
from ._args import (
    add_cluster_arguments,
    add_output_argument,
    add_storage_arguments,
    add_store_argument,
    dask_client,
    finite_or_nan,
    store_path,
)
from ._sidecar import (
    image_fields,
    lookup_table_path,
    own_lookup_table,
    refuse_unsafe_outputs,
    write_lookup_table,
    write_sidecar,
)


def select_variable(store, var: str, genes=None, *, all_genes: bool = False):
    """The DataArray ``var`` of a store: 'expression' or '<group>/<variable>' of a result; of
    ``genes`` when given, else of its one gene (or, with ``all_genes``, of all of them)."""
    from ..sources.table import resolve_genes
    from ..store import open_store, read_group, voxel_coords

    ds = open_store(store)
    if "/" in var:
        group, name = var.rsplit("/", 1)
        try:
            result = read_group(store, group)
        except KeyError as exc:
            raise ResultNotFoundError(_not_a_variable(store, var) or exc.args[0]) from None
        if name not in result:
            raise ResultNotFoundError(
                _not_a_variable(store, var)
                or _no_reconstruction(store, group, name, result)
                or f"{group} has no variable {name}; it has {', '.join(map(str, result.data_vars))}"
            )
        da = result[name]
        missing = {k: v for k, v in voxel_coords(ds).items() if k not in da.coords and "voxel" in da.dims}
        da = da.assign_coords(missing)
    else:
        if var not in ds:
            raise ResultNotFoundError(
                _not_a_variable(store, var)
                or f"the store has no variable {var}; try 'expression' or a result such as "
                "representations/<split>/<method>/k<dim>/embedding"
            )
        da = ds[var]
    if "voxel" not in da.dims:
        dims = ", ".join(map(str, da.dims))
        if "region" in da.dims and "/" in var:  # a table of parcellate written into the store
            group, name = var.rsplit("/", 1)
            raise InputError(
                f"{var} is a region table (dims {dims}), whose image lies on its atlas's grid; in Python, "
                f"brainzarr.read_group({str(store)!r}, {group!r})[{name!r}].brain.to_nifti('out.nii.gz') "
                "writes it there"
            )
        raise InputError(f"{var} has no voxel dimension (dims {dims}); only voxel arrays export")
    if "gene" in da.dims:
        if genes is None:
            if da.sizes["gene"] > 1 and not all_genes:
                raise InputError(
                    f"{var} has {da.sizes['gene']:,} genes; choose with --gene (comma-separated genes make a 4-D file)"
                )
        else:
            chosen = resolve_genes(genes, da["gene"].values)
            da = da.sel(gene=chosen[0]) if len(chosen) == 1 else da.sel(gene=chosen)
    elif genes is not None:  # ignored, the user would get every component while asking for a gene
        raise InputError(
            f"{var} has no gene dimension (dims {', '.join(map(str, da.dims))}); --gene picks genes of "
            "expression or of a reconstruction"
        )
    return da


def resolved_variable(store, var: str) -> str:
    """``var`` as the store holds it: a result named without its split level
    (``representations/pca/k8/embedding``, the layout of earlier versions) with the split it was
    read from, for the sidecars' record."""
    from ..store import as_store, resolve_group

    if "/" not in var:
        return var
    group, name = var.rsplit("/", 1)
    return f"{resolve_group(as_store(store, allow_incomplete=True), group)}/{name}"


def _not_a_variable(store, var: str) -> str | None:
    """Why ``var``, a result or a folder of results, names no array, and which names would."""
    from ..store import list_groups, read_group

    try:
        result = read_group(store, var)
    except (KeyError, ValueError, OSError):
        result = None
    if result is not None:  # the name of a result, not of one of its arrays
        arrays = _voxel_arrays(result)
        if arrays:
            return f"{var} is a result; name one of its voxel arrays: " + ", ".join(f"{var}/{a}" for a in arrays)
    method, dash, dim = var.rpartition("-k")
    groups = list_groups(store)
    named = [g for g in groups if dash and dim.isdigit() and g.endswith(f"/{method}/k{dim}")]
    if named:  # 'pca-k8', as the evaluation's tables name a result
        return f"{var} is how the tables name a result; its embedding is " + " or ".join(
            f"{g}/embedding" for g in named
        )
    short = [g for g in groups if g.endswith("/" + var.strip("/"))]
    if short:  # 'pca/k8': a result named by its last levels
        return f"{var} is short for {' or '.join(short)}, a result; name one of its arrays, e.g. {short[0]}/embedding"
    group, _, name = var.strip("/").rpartition("/")
    short = [g for g in groups if group and g.endswith("/" + group)]
    if short:  # 'pca/k8/embedding'
        return f"no result {group} in the store; did you mean " + " or ".join(f"{g}/{name}" for g in short) + "?"
    inside = list_groups(store, var)
    if inside:
        shown = ", ".join(inside[:6]) + (f" (and {len(inside) - 6} more)" if len(inside) > 6 else "")
        example = (_voxel_arrays(read_group(store, inside[0])) or ["embedding"])[0]
        return f"{var} holds results, not an array: {shown}; name an array of one, e.g. {inside[0]}/{example}"
    return None


def _no_reconstruction(store, group: str, name: str, result) -> str | None:
    """How to get the reconstruction of a fit written without one (``--no-reconstruction``)."""
    method, dim = result.attrs.get("method"), result.attrs.get("dim")
    if name != "reconstruction" or "embedding" not in result or method is None or dim is None:
        return None
    split = group.strip("/").split("/")[1] if group.count("/") == 3 else None
    again = f"brainzarr fit {store} --methods {method} --dims {dim} --overwrite" + (
        f" --split {split}" if split else ""
    )
    return (
        f"{group} was fitted without its reconstruction (--no-reconstruction): `{again}` writes it, or in Python "
        f"brainzarr.load_model(store, {method!r}, {dim}{f', split={split!r}' if split else ''}).inverse_transform(...) "
        "reconstructs the voxels you need from the embedding"
    )


def _voxel_arrays(result) -> list[str]:
    """The arrays of a result group that export as images, its embedding first."""
    return sorted((a for a, v in result.data_vars.items() if "voxel" in v.dims), key=lambda a: a != "embedding")


def _run(args):
    import nibabel as nib

    from ..nifti import NIFTI_SUFFIXES, _like_grid, is_labels, write_nifti

    out = Path(args.output)
    if out.is_dir() or str(args.output).endswith(("/", "\\")):
        raise InputError(f"-o {args.output} is a folder; give a file name ending in .nii or .nii.gz")
    if not out.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"-o {args.output}: a NIfTI file name must end in .nii or .nii.gz")
    if args.like is not None:
        _like_grid(args.like)  # a bad --like fails before anything is read
    from .build import parse_genes

    da = select_variable(store_path(args), args.var, parse_genes(args.gene))  # lazy: checks the variable and genes
    args.var = resolved_variable(store_path(args), args.var)
    lut = lookup_table_path(out) if is_labels(da) else None  # FSLeyes shows a label image's names with it
    refuse_unsafe_outputs([out, lut], inputs={"the --like image": args.like}, overwrite=args.overwrite)
    background = args.background
    replaced = out.exists()
    stale = own_lookup_table(out) if lut is None else None  # of the label image this one replaces
    # a few volumes at a time (a 1 mm 128-component embedding is 4.4 GB as one 4-D volume), whole
    # or not at all
    with dask_client(args):  # reads on the cluster's workers when asked
        write_nifti(da, out, background=background, like=args.like)
    img = nib.load(out)
    print(f"{'replaced' if replaced else 'wrote'} {out}  shape {img.shape}")
    record = _sidecar(da, img, args)
    if lut is not None:
        record["LookupTable"] = write_lookup_table(out, record["Labels"]).name
    print(f"wrote {write_sidecar(out, record)}  (what the image holds)")
    if stale is not None:  # it named the labels of the image replaced, not of this one
        stale.unlink(missing_ok=True)
        print(f"removed {stale}  (the lookup table of the label image replaced)")
    if lut is not None:
        print(f"wrote {lut}  (its labels' names and colours: fsleyes {out} -ot label -l {lut})")


def _sidecar(da, img, args) -> dict:
    """The image's JSON sidecar, as BIDS describes derivatives: what it holds (the labels of a
    4-D image's volumes, which a NIfTI viewer does not show), its space and its source."""
    from ..store import grid_info

    coords, fields = image_fields(img)
    return {
        "Description": " ".join([args.var, *(f"{k}={v}" for k, v in coords.items())])
        + f" of the store {store_path(args)}",
        "Sources": [str(store_path(args))],
        "Space": grid_info(da).get("space"),
        "Grid": args.like or "the store's grid",
        "variable": args.var,
        **coords,
        **fields,
        "background": "NaN" if np.isnan(args.background) else args.background,  # JSON has no NaN
    }


def register(sub):
    p = sub.add_parser(
        "export",
        help="write a voxel array of a store as NIfTI",
        description="Write a voxel array of a store (expression, or a result's embedding, reconstruction or "
        "error map, or a label coordinate such as the split) as a NIfTI image, with a JSON sidecar beside it "
        "(apoe.nii.gz -> apoe.json) saying what it holds: the variable, the gene, the labels of a 4-D image's "
        "volumes or of a label image's values, the space and the store.",
    )
    add_store_argument(p)
    p.add_argument(
        "var",
        help="'expression', a result variable (e.g. representations/random/pca/k8/embedding), or a voxel "
        "coordinate: split_blocked or hemisphere become a label image",
    )
    p.add_argument(
        "--gene", help="gene symbol, or several for a 4-D file: comma-separated, N evenly spaced, or a text file"
    )
    add_output_argument(p, dest="output", required=True, help="output file, .nii or .nii.gz")
    p.add_argument("--background", type=finite_or_nan, default=0.0, help="value outside the brain: 0 (default) or nan")
    p.add_argument(
        "--like",
        metavar="IMAGE",
        help="write on this NIfTI image's grid (nearest voxel) instead of the store's, or on FSL's "
        "standard grid: MNI152_T1_1mm (182 x 218 x 182) or MNI152_T1_2mm",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_storage_arguments(p)
    add_cluster_arguments(p)
    p.set_defaults(func=_run)
