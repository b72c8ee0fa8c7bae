"""Where sample-level expression comes from.

Every source returns a *sample table* (:mod:`brainzarr.sources.table`): an xarray Dataset
``expression (sample, gene)`` with sample coordinates x, y, z (MNI mm), donor, hemisphere,
structure.

* ``synthetic``: the real AHBA sample sites with values from a known generative model
  (:mod:`brainzarr.sources.synthetic`); no network.
* ``abagen``: real AHBA donor folders, processed with the reference study's settings
  (:mod:`brainzarr.sources.ahba`).
* ``parcellated``: a region x gene table plus its atlas (:mod:`brainzarr.sources.parcellated`).
"""

from __future__ import annotations

from .._deprecation import renamed_kwargs
from .._validation import did_you_mean
from ..exceptions import InputError
from .table import UnknownGeneError, make_sample_table, resolve_genes, validate_sample_table

__all__ = ["SOURCES", "load_source", "make_sample_table", "resolve_genes", "validate_sample_table", "UnknownGeneError"]

SOURCES = ("synthetic", "abagen", "parcellated")


@renamed_kwargs(seed="random_state")
def load_source(name: str, *, genes=None, random_state: int = 0, **options):
    """Load the sample table of source ``name`` (see :data:`SOURCES`).

    ``random_state`` drives the synthetic source; the others ignore it. Other keyword arguments go
    to the source's loader.
    """
    if name not in SOURCES:
        raise InputError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}{did_you_mean(name, SOURCES)}")
    check_options(name, options)
    if name == "synthetic":
        from .synthetic import load_synthetic

        return load_synthetic(genes, random_state=random_state, **options)
    if name == "abagen":
        from .ahba import load_ahba

        return load_ahba(genes=genes, **options)
    from .parcellated import load_parcellated

    return load_parcellated(genes=genes, **options)


def source_options(name: str) -> list[str]:
    """The options the loader of source ``name`` takes (besides ``genes`` and ``random_state``)."""
    import inspect

    if name == "synthetic":
        from dataclasses import fields

        from .synthetic import SyntheticModel, load_synthetic

        loader, extra = load_synthetic, [f.name for f in fields(SyntheticModel)]
    elif name == "abagen":
        from .ahba import load_ahba

        loader, extra = load_ahba, []
    else:
        from .parcellated import load_parcellated

        loader, extra = load_parcellated, []
    taken = [p.name for p in inspect.signature(loader).parameters.values() if p.kind is not p.VAR_KEYWORD]
    return sorted(set(taken + extra) - {"genes", "random_state"})


#: build settings a user may give as a source's option; brainzarr.build_store takes them in layout=
_LAYOUT_FIELDS = ("dtype", "compressor", "shard_genes", "checksum", "value_range")


def check_options(name: str, options: dict, *, also=()) -> None:
    """Refuse options the source's loader does not take, before it loads anything; an option
    close to one it takes, or to one of ``also`` (the caller's own parameters: ``n_neighbours``
    for build_store's ``n_neighbors``), is named as what was likely meant."""
    import difflib

    from ..exceptions import InputError

    unknown = sorted(set(options) - set(source_options(name)))
    if not unknown:
        return
    for option in unknown:
        meant = difflib.get_close_matches(option, [*source_options(name), *also], n=1, cutoff=0.8)
        if meant:
            raise InputError(f"unknown option {option}: did you mean {meant[0]}?")
    hint = ""
    if set(unknown) & set(_LAYOUT_FIELDS):
        hint = (
            "; a store's dtype, compressor and shards are its layout: "
            "layout=brainzarr.layout.Layout(dtype=..., compressor=...), or layout='float32'"
        )
    raise InputError(
        f"the {name} source takes no {', '.join(unknown)}; its options: {', '.join(source_options(name))}{hint}"
    )
