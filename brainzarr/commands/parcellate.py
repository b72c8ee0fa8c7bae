"""``brainzarr parcellate``: a voxel array of a store averaged (or summed, ...) over an atlas's
regions -> CSV."""

from __future__ import annotations

from pathlib import Path

from .._atomic import atomic_file
from ..exceptions import DataNotFoundError, InputError
from ..sources.parcellated import table_delimiter
from ._args import (
    add_cluster_arguments,
    add_output_argument,
    add_storage_arguments,
    add_store_argument,
    dask_client,
    mark_output,
    store_path,
)
from ._sidecar import image_fields, refuse_unsafe_outputs, sidecar_path, write_sidecar
from .build import GENES_HELP, parse_genes


def _run(args):
    from ..nifti import _checked_nifti_path
    from ..parcellate import parcellate
    from .export import resolved_variable, select_variable

    out = Path(args.output)
    if out.is_dir() or out.suffix.lower() not in (".csv", ".tsv"):
        raise InputError(f"-o {args.output}: give a file name ending in .csv (or .tsv, tab-separated)")
    nifti = None if args.nifti is None else _checked_nifti_path(args.nifti)
    inputs = {"the atlas": args.atlas, "the look-up table": args.lut}
    refuse_unsafe_outputs([out, nifti], inputs=inputs, overwrite=args.overwrite)
    if not Path(args.atlas).is_file():
        raise DataNotFoundError(f"no atlas file at {args.atlas}")
    da = select_variable(store_path(args), args.var, parse_genes(args.gene), all_genes=True)
    args.var = resolved_variable(store_path(args), args.var)
    if args.lut is not None and not Path(args.lut).is_file():
        raise DataNotFoundError(f"no look-up table at {args.lut}")
    one_gene = "gene" in da.coords and da["gene"].ndim == 0
    if one_gene:  # a column named by its gene, as with several (a parcellated build reads it so)
        da = da.expand_dims("gene", axis=-1)
    with dask_client(args):
        table = parcellate(
            da, args.atlas, background=args.background, weighting=args.weighting, lut=args.lut, strategy=args.strategy
        )
    held = table["n_voxels"].values > 0
    frame = table[held].drop_vars(["n_voxels", "region_name"], errors="ignore")
    frame = frame.to_pandas() if frame.ndim == 2 else frame.to_pandas().rename(args.var.rsplit("/", 1)[-1]).to_frame()
    frame.index.name = "label"
    columns = frame.columns.name or "column"
    shape = f"{len(frame):,} regions x {frame.shape[1]:,} {columns}{'s' if frame.shape[1] != 1 else ''}"
    if "region_name" in table.coords:  # the parcellated source leaves this column out
        frame.insert(0, "region_name", table["region_name"].values[held])
    with atomic_file(out, suffix=out.suffix) as tmp:
        frame.to_csv(tmp, sep=table_delimiter(out))
    print(f"wrote {out}  {shape}")
    record = _sidecar(table, args)
    print(f"wrote {write_sidecar(out, record)}  (how the table was made)")
    if nifti is None:
        return
    # on the atlas's grid, a few volumes at a time
    img = (table.squeeze("gene") if one_gene else table).brain.to_nifti(nifti)
    print(f"wrote {nifti}  {' x '.join(map(str, img.shape))} (the atlas's grid)")
    image = _image_sidecar(da, table, img, args)
    if sidecar_path(nifti) != sidecar_path(out):
        print(f"wrote {write_sidecar(nifti, image)}  (what the image holds)")
        return
    # dk.csv and dk.nii.gz: one sidecar describes both, as BIDS's inheritance principle has it;
    # the table's keys stand (its background is the atlas's label of no region)
    both = {**record, **{key: value for key, value in image.items() if key not in record}}
    both["Description"] = f"{record['Description']}; {nifti.name}: the same on the atlas's grid"
    print(f"wrote {write_sidecar(out, both)}  (how the table and the image were made)")


def _sidecar(table, args) -> dict:
    """The CSV's JSON sidecar, as BIDS describes tabular files: what each value is and where it
    came from (a parcellated build reads the strategy from it)."""
    described = {
        "label": {"Description": f"the label of the region in the atlas {args.atlas}"},
        "region_name": {"Description": f"the region's name in {args.lut}"},
    }
    return {
        "Description": f"{table.attrs['statistic']} of {args.var} of the store {store_path(args)}",
        "Sources": _sources(args),
        **{key: table.attrs[key] for key in ("strategy", "weighting", "background")},
        "variable": args.var,
        **{column: text for column, text in described.items() if column != "region_name" or args.lut},
    }


def _sources(args) -> list[str]:
    """The files a region table or image is made from: the store, the atlas and its look-up table."""
    return [str(store_path(args)), str(args.atlas)] + ([str(args.lut)] if args.lut else [])


def _image_sidecar(da, table, img, args) -> dict:
    """The region image's JSON sidecar, as ``brainzarr export`` writes one: the statistic, the
    labels of its volumes (the genes or columns), its grid (the atlas's) and its sources."""
    from ..store import grid_info

    coords, fields = image_fields(img)
    return {
        "Description": f"{table.attrs['statistic']} of {args.var} of the store {store_path(args)} in each "
        f"region of {args.atlas}, on the atlas's grid (a region that holds no store voxel is NaN)",
        "Sources": _sources(args),
        "Space": grid_info(da).get("space"),
        "Grid": str(args.atlas),
        **{key: table.attrs[key] for key in ("strategy", "weighting")},
        "variable": args.var,
        **coords,
        **fields,
        "background": 0.0,  # outside the atlas's regions
    }


def register(sub):
    from ..parcellate import STRATEGIES, WEIGHTINGS

    p = sub.add_parser(
        "parcellate",
        help="average a voxel array of a store over an atlas's regions (a region x gene CSV)",
        description="Average a voxel array of a store (expression, or a result's embedding, "
        "reconstruction or error map) over each region of an atlas in MNI space, in one streamed "
        "pass. The CSV (first column: the atlas label; with --lut, then the region's name) is the "
        "table `brainzarr build --source parcellated` reads; a JSON sidecar beside it (dk.csv -> "
        "dk.json) says how it was made. Regions that hold no store voxel are left out, with a warning.",
    )
    add_store_argument(p)
    p.add_argument("var", help="'expression' or a result variable, e.g. representations/random/pca/k8/embedding")
    p.add_argument("--atlas", required=True, help="a NIfTI of integer region labels in MNI space, any resolution")
    p.add_argument("--gene", help=f"{GENES_HELP} (default: all)")
    p.add_argument("--background", type=int, default=0, help="the label of no region (default 0)")
    p.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        default="centre",
        help="a voxel counts in the region at its centre (default), or in each region by the fraction "
        "of its volume there (for an atlas finer than the store)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="mean",
        help="each region's value, as nilearn's NiftiLabelsMasker names them (default: mean); "
        "a CSV of another one is not a table that a parcellated build reads",
    )
    p.add_argument(
        "--lut",
        help="the atlas's look-up table, naming its regions (a column region_name): a BIDS dseg.tsv "
        "(columns index, name), FreeSurfer-style 'index name ...' rows, an FSLeyes .lut, or an FSL atlas .xml",
    )
    add_output_argument(p, dest="output", required=True, help="output file, .csv (or .tsv: tab-separated, as BIDS)")
    p.add_argument(
        "--nifti",
        metavar="PATH",
        help="also write the region means on the atlas's grid (.nii.gz; one volume per gene or column), "
        "to look at in FSLeyes, with a JSON sidecar (dk_map.nii.gz -> dk_map.json; the table's, when they "
        "share a name)",
    )
    mark_output(p, "nifti")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_cluster_arguments(p)
    add_storage_arguments(p)
    p.set_defaults(func=_run)
