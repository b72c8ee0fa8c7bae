"""The sample table every source returns: ``expression (sample, gene)`` with sample coordinates.

Coordinates on ``sample``: ``x, y, z`` (MNI mm), ``donor``, ``hemisphere`` ('L', 'R' or
'M'), ``structure``; on ``gene``: the symbol. ``attrs["source"]`` names the source and
``attrs["options"]`` holds its options (JSON), both copied into a store's provenance.
"""

from __future__ import annotations

import collections
import difflib
import functools
import json
import os
import re
import warnings
from collections.abc import Iterable

import numpy as np
import xarray as xr

from .._location import user_path
from .._text import read_user_text
from ..exceptions import InputError, InputTypeError, UnknownGeneError

__all__ = ["make_sample_table", "read_gene_list", "resolve_genes", "validate_sample_table", "UnknownGeneError"]


def hemisphere_of(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return np.where(np.isclose(x, 0.0), "M", np.where(x < 0, "L", "R"))


def make_sample_table(
    values,
    genes,
    xyz,
    *,
    donor,
    structure=None,
    hemisphere=None,
    sample_id=None,
    source: str,
    options: dict | None = None,
) -> xr.Dataset:
    """Assemble a validated sample table from plain arrays."""
    values = np.asarray(values, dtype=np.float32)
    xyz = np.asarray(xyz, dtype=float)
    n = len(values)
    table = xr.Dataset(
        {"expression": (("sample", "gene"), values)},
        coords={
            "sample": np.arange(n) if sample_id is None else np.asarray(sample_id),
            "gene": np.asarray(genes).astype(str),
            "x": ("sample", xyz[:, 0]),
            "y": ("sample", xyz[:, 1]),
            "z": ("sample", xyz[:, 2]),
            "donor": ("sample", np.asarray(donor).astype(str)),
            "hemisphere": (
                "sample",
                hemisphere_of(xyz[:, 0]) if hemisphere is None else np.asarray(hemisphere).astype(str),
            ),
            "structure": ("sample", np.full(n, "unknown") if structure is None else np.asarray(structure).astype(str)),
        },
        attrs={"source": source, "options": json.dumps(options or {}, default=str)},
    )
    validate_sample_table(table)
    return table


def validate_sample_table(table: xr.Dataset) -> None:
    """Raise ValueError unless ``table`` has the sample-table schema."""
    if "expression" not in table or table["expression"].dims != ("sample", "gene"):
        raise InputError("a sample table needs expression with dims (sample, gene)")
    missing = [c for c in ("x", "y", "z", "donor", "hemisphere", "structure", "gene") if c not in table.coords]
    if missing:
        raise InputError(f"a sample table needs the coordinates {missing}")
    if table.sizes["sample"] == 0 or table.sizes["gene"] == 0:
        raise InputError("the sample table is empty")
    genes = table["gene"].values
    if len(set(genes)) != len(genes):
        raise InputError("gene symbols in a sample table must be unique")
    if not np.all(np.isfinite(np.column_stack([table[c].values for c in "xyz"]))):
        raise InputError("sample coordinates must be finite")


#: a sample farther than this from the MNI152 brain has coordinates that are not MNI millimetres
#: (voxel indices, axes swapped); the AHBA's 3,702 sites lie within 6.1 mm of the 2 mm mask
OUTSIDE_THE_BRAIN_MM = 10.0


@functools.lru_cache(maxsize=1)
def _mni152_brain_tree():
    from scipy.spatial import cKDTree

    from ..grid import mni152_grid

    return cKDTree(mni152_grid(2).xyz)


def warn_of_samples_outside_the_brain(table: xr.Dataset, *, stacklevel: int = 2) -> None:
    """Warn when samples lie more than :data:`OUTSIDE_THE_BRAIN_MM` outside the MNI152 brain.

    Coordinates given as voxel indices, or with two axes swapped, build a store without a
    word: every voxel takes the values of whichever samples are nearest.
    """
    xyz = np.column_stack([table[c].values for c in "xyz"]).astype(float)
    distance, _ = _mni152_brain_tree().query(xyz)
    far = distance > OUTSIDE_THE_BRAIN_MM
    if far.any():
        worst = int(np.argmax(distance))
        at = ", ".join(f"{v:g}" for v in xyz[worst])
        warnings.warn(
            f"{int(far.sum()):,} of {len(xyz):,} samples lie more than {OUTSIDE_THE_BRAIN_MM:g} mm outside "
            f"the MNI152 brain (the farthest {distance[worst]:.0f} mm, at x, y, z = {at}): a sample table's "
            "x, y and z are MNI millimetres, not voxel indices",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


#: a gene list file's column header (as pandas writes one, or abagen names its columns): not a gene
_GENE_LIST_HEADERS = {"gene", "genes", "symbol", "symbols", "gene_symbol", "gene_symbols", "gene symbol"}


def read_gene_list(path) -> list[str]:
    """Gene symbols from a text file, separated by commas, spaces or line breaks (one a line, or a
    CSV row); ``#`` starts a comment; a first line that is a column header (``gene``,
    ``gene_symbol``, ``Symbol``: not in upper case, as human gene symbols are) is left out."""
    lines = [line.split("#", 1)[0] for line in read_user_text(user_path(path), "a gene list").splitlines()]
    lines = [line for line in lines if line.strip()]
    first = lines[0].strip().strip("\"'") if lines else ""
    if first.casefold() in _GENE_LIST_HEADERS and first != first.upper():  # human gene symbols are upper case
        lines = lines[1:]
    symbols = [g for g in re.split(r"[\s,;]+", "\n".join(lines)) if g]
    if not symbols:
        raise InputError(f"{path} lists no genes")
    return symbols


def gene_request(genes):
    """``genes`` with a gene list file (a path) read into its symbols; anything else as given."""
    return read_gene_list(genes) if isinstance(genes, os.PathLike) else genes


def resolve_genes(genes, available) -> list[str]:
    """Turn a gene request into symbols of ``available``.

    Parameters
    ----------
    genes : None, int, str, list of str or path
        None: all; int n: n genes evenly spaced through ``available`` (so a small store still
        spans the alphabet and every chromosome); str: comma-separated symbols; list: symbols;
        a :class:`~pathlib.Path`: a text file of symbols (:func:`read_gene_list`).
    available : sequence of str
    """
    genes = gene_request(genes)
    available = [str(g) for g in available]
    if genes is None:
        return available
    if isinstance(genes, (float, np.floating)) and float(genes).is_integer():
        genes = int(genes)
    if isinstance(genes, (bool, np.bool_, float, np.floating)) or not isinstance(
        genes, (int, np.integer, str, Iterable)
    ):
        raise InputTypeError(  # iterating 2.5 or True said only "'float' object is not iterable"
            "genes must be None (all), a number of genes, comma-separated symbols, a list of symbols or the "
            f"path of a file of them; got {genes!r}"
        )
    if isinstance(genes, (int, np.integer)):
        if not 1 <= genes <= len(available):
            raise InputError(f"asked for {genes:,} genes; this source has 1 to {len(available):,}")
        pick = np.unique(np.linspace(0, len(available) - 1, int(genes)).round().astype(int))
        return [available[i] for i in pick]
    if isinstance(genes, str):
        genes = [g.strip() for g in genes.split(",") if g.strip()]
    genes = [str(g) for g in genes]
    if not genes:
        raise InputError("the gene list is empty")
    known = set(available)
    unknown = [g for g in genes if g not in known]
    if unknown:
        by_case = {a.casefold(): a for a in available}  # "apoe" -> APOE, which difflib would not find

        def near(g):
            return [by_case[g.casefold()]] if g.casefold() in by_case else difflib.get_close_matches(g, available, 2)

        hints = [f"{g} (did you mean {', '.join(m)}?)" if (m := near(g)) else g for g in unknown[:5]]
        raise UnknownGeneError(
            f"unknown gene(s): {'; '.join(hints)}" + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        )
    if len(set(genes)) != len(genes):
        twice = sorted(g for g, n in collections.Counter(genes).items() if n > 1)
        raise InputError(f"the gene list names {', '.join(twice[:5])}{' ...' * (len(twice) > 5)} more than once")
    return genes
