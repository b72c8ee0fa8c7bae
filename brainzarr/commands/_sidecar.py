"""The JSON sidecars that commands write beside their files, as BIDS describes derivatives:
what the file holds, where it came from, and which brainzarr made it."""

from __future__ import annotations

import json
from pathlib import Path

from .._atomic import sidecar_path, write_text
from .._version import generated_by, made_by_brainzarr
from ..exceptions import StoreExistsError
from ._args import refuse_existing, refuse_writing_over_inputs

__all__ = [
    "image_fields",
    "lookup_table_path",
    "own_lookup_table",
    "refuse_unsafe_outputs",
    "sidecar_path",
    "write_lookup_table",
    "write_sidecar",
]


def write_sidecar(path, record: dict) -> Path:
    """Write ``record`` (with ``GeneratedBy``: brainzarr and its version) as the sidecar of
    ``path``, whole or not at all; returns the sidecar's path."""
    record = {**record, "GeneratedBy": generated_by()}
    return write_text(sidecar_path(path), json.dumps(record, indent=2) + "\n")


def lookup_table_path(path) -> Path:
    """The FSLeyes lookup table beside a label image: ``split.nii.gz`` -> ``split.lut``."""
    return sidecar_path(path).with_suffix(".lut")


def write_lookup_table(path, labels: dict) -> Path:
    """Write ``labels`` (code -> name, as a label image's header holds them) as the FSLeyes
    lookup table of the image ``path`` (``split.lut``: ``value r g b name`` per line, ascending,
    colours in [0, 1], as FSLeyes' manual describes), whole or not at all; returns its path.
    ``fsleyes split.nii.gz -ot label -l split.lut`` (or FSLeyes' lookup table panel) shows a
    label image's names and colours with it."""
    from ..plots import label_colours

    labels = {int(code): str(name) for code, name in labels.items()}
    codes = sorted(labels)
    names = [labels[code] for code in codes]
    rows = [
        f"{code} {r:.5f} {g:.5f} {b:.5f} {' '.join(name.split()) or '(empty)'}"
        for code, name, (r, g, b, _) in zip(codes, names, label_colours(names))
    ]
    return write_text(lookup_table_path(path), "\n".join(rows) + "\n")


def own_lookup_table(path) -> Path | None:
    """The lookup table beside the image ``path`` that brainzarr wrote with it (its sidecar names
    it), or None: what an export of values over that image leaves stale."""
    lut = lookup_table_path(path)
    if lut.exists() and _written_by_brainzarr(sidecar_path(path), lookup_table=lut.name):
        return lut
    return None


def refuse_unsafe_outputs(files, *, inputs: dict, overwrite: bool) -> None:
    """Stop before anything is written when one of a command's output files (None: not asked
    for) or its sidecar is a file the command reads (``inputs``: ``{"the atlas": path}``), exists
    without ``overwrite``, or is a sidecar that brainzarr did not write."""
    files = [Path(f) for f in files if f is not None]
    paths = [path for f in files for path in (f, sidecar_path(f))]
    refuse_writing_over_inputs(paths, inputs)
    refuse_existing(*paths, overwrite=overwrite)
    _refuse_foreign_sidecars(files)


def _refuse_foreign_sidecars(files: list[Path]) -> None:
    """Stop when the sidecar of one of ``files`` exists and brainzarr did not write it: a file's
    own sidecar, e.g. an atlas's ``dk.json`` beside ``dk.nii.gz``, which ``--overwrite`` (asked for
    the output) must not replace."""
    for path in files:
        sidecar = sidecar_path(path)
        if path.suffix == ".lut":  # a label image's lookup table: brainzarr's when its sidecar names it
            if path.exists() and not _written_by_brainzarr(sidecar, lookup_table=path.name):
                raise StoreExistsError(
                    f"{path} exists and brainzarr did not write it: give the image another name "
                    "(its lookup table would replace that file)"
                )
            continue
        if sidecar.exists() and not _written_by_brainzarr(sidecar):
            raise StoreExistsError(
                f"{sidecar} exists and brainzarr did not write it: give {path.name} another name "
                "(its sidecar would replace that file)"
            )


def _written_by_brainzarr(sidecar: Path, lookup_table: str | None = None) -> bool:
    """Whether brainzarr wrote ``sidecar`` (and, given ``lookup_table``, named that file as the
    image's lookup table)."""
    try:
        record = json.loads(sidecar.read_text())
        if lookup_table is not None and record.get("LookupTable") != lookup_table:
            return False
        return made_by_brainzarr(record)
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def image_fields(img) -> tuple[dict, dict]:
    """What a NIfTI image that brainzarr wrote holds, for its sidecar: the scalar coordinates of
    its array (e.g. ``gene``), and its voxel size, units and, for a 4-D image, the labels of its
    volumes in order (which a NIfTI viewer does not show)."""
    from ..nifti import _read_meta

    meta = _read_meta(img)  # what brainzarr wrote into the image's header extension
    fields = {"VoxelSizeMM": [round(float(z), 6) for z in img.header.get_zooms()[:3]]}
    if meta.get("units"):
        fields["Units"] = meta["units"]
    if meta.get("labels"):
        fields["Labels"] = meta["labels"]
    if meta.get("volume_dim"):
        fields["VolumeDimension"] = meta["volume_dim"]
        fields["VolumeLabels"] = meta.get("volume_labels")
    return meta.get("coords") or {}, fields
