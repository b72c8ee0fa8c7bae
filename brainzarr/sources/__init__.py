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
from .table import UnknownGeneError, make_sample_table, resolve_genes, validate_sample_table

__all__ = ["SOURCES", "load_source", "make_sample_table", "resolve_genes", "validate_sample_table", "UnknownGeneError"]

SOURCES = ("synthetic", "abagen", "parcellated")


@renamed_kwargs(seed="random_state")
def load_source(name: str, *, genes=None, random_state: int = 0, **options):
    """Load the sample table of source ``name`` (see :data:`SOURCES`).

    ``random_state`` drives the synthetic source; the others ignore it. Other keyword arguments go
    to the source's loader.
    """
    if name == "synthetic":
        from .synthetic import load_synthetic

        return load_synthetic(genes, random_state=random_state, **options)
    if name == "abagen":
        from .ahba import load_ahba

        return load_ahba(genes=genes, **options)
    if name == "parcellated":
        from .parcellated import load_parcellated

        return load_parcellated(genes=genes, **options)
    raise ValueError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
