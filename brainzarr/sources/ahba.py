"""The real Allen Human Brain Atlas, read from the donor folders abagen downloads.

:func:`load_ahba` runs abagen's sample-level workflow (that of
``abagen.get_samples_in_mask(mask=None, ...)``: every sample kept, nothing averaged) with the
reference study's settings and returns brainzarr's sample table
(:func:`brainzarr.sources.table.make_sample_table`).

The workflow, step by step (abagen 0.1.3's order; *abagen* marks the steps done by abagen's
own functions, *compat* those re-implemented in :mod:`brainzarr.sources.abagen_compat`
because abagen 0.1.3 fails there on pandas >= 2):

1. probes: ``Probes.csv`` of the first donor (*abagen* ``io.read_probes``); with
   ``reannotated=True`` replaced by abagen's reannotation (*abagen*
   ``probes_.reannotate_probes``; all 45,892 reannotated probes must be in the file, else a
   ``ValueError``); probes without an Entrez id dropped.
2. samples, per donor: ``SampleAnnot.csv`` (*abagen* ``io.read_annotation``); corrected MNI
   coordinates (*abagen* ``samples_.update_mni_coords``); left/right mirroring (*abagen*
   ``samples_.mirror_samples``: copies with x negated and the contralateral structure);
   samples whose hemisphere disagrees with the sign of x dropped, and abagen's structure
   class attached (*abagen* ``samples_.drop_mismatch_samples``).
3. intensity-based filter over all donors' samples, mirrored copies included (*abagen*
   ``probes_.filter_probes``).
4. one probe per gene (*compat* ``collapse_probes``; see that module for the exact semantics
   of ``diff_stability``, which ranks probes by the consistency across donors of their
   expression averaged per AHBA ontology structure, not per atlas region).
5. per donor: sample normalisation across genes, then gene normalisation across the donor's
   samples (*abagen* ``correct.normalize_expression``), as abagen does with
   ``norm_matched=False``; genes left with non-finite values in any donor are dropped (abagen
   drops them per donor in its sample-level output and across donors when aggregating).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._location import user_path
from .._validation import Bound, checked
from ..exceptions import DataNotFoundError, InputError
from . import abagen_compat
from .abagen_data import DONOR_SAMPLES, reannotated_probes
from .table import UnknownGeneError, make_sample_table, resolve_genes

log = logging.getLogger(__name__)
__all__ = ["load_ahba", "AHBA_FILES", "DONOR_UIDS", "resolve_donors", "microarray_dir"]

#: The five files of a donor folder.
AHBA_FILES = ("MicroarrayExpression.csv", "PACall.csv", "Probes.csv", "SampleAnnot.csv", "Ontology.csv")
#: Allen's donor UIDs for abagen's short ids.
DONOR_UIDS = {
    "9861": "H0351.2001",
    "10021": "H0351.2002",
    "12876": "H0351.1009",
    "14380": "H0351.1012",
    "15496": "H0351.1015",
    "15697": "H0351.1016",
}
_FOLDER = "normalized_microarray_donor{}"
_MIRROR = (None, "bidirectional", "leftright", "rightleft")


@contextmanager
def _quiet_abagen():
    """Silence the deprecation noise abagen 0.1.3 emits on every call under pandas 3."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"abagen(\.|$)")
        warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated")
        yield


def _abagen():
    root = logging.getLogger()
    first_import = "abagen.allen" not in sys.modules
    handlers, level = list(root.handlers), root.level
    with _quiet_abagen():
        import abagen  # noqa: F401  (needs setuptools<81 for pkg_resources)
        from abagen import correct, io, probes_, samples_
    if first_import:
        # abagen.allen calls logging.basicConfig on import; undone, so that the application's
        # own basicConfig still takes effect and libraries stay silent until it configures logging
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    return abagen, io, probes_, samples_, correct


def microarray_dir(data_dir=None) -> Path:
    """The ``microarray/`` folder for ``data_dir`` (its parent or itself), as abagen lays it out,
    or ``data_dir`` itself when it holds the donor folders without that level.

    ``data_dir=None`` follows abagen: ``$ABAGEN_DATA``, else ``~/abagen-data``.
    """
    if data_dir is None:
        data_dir = os.environ.get("ABAGEN_DATA") or "~/abagen-data"
    path = user_path(data_dir)
    one = re.fullmatch(_FOLDER.format(r"(\w+)"), path.name)
    if one:  # a donor's own folder, where the one that holds microarray/ was meant
        parent = path.parent.parent if path.parent.name == "microarray" else path.parent
        raise InputError(
            f"{data_dir} is the folder of one donor ({one.group(1)}), not the data folder that holds "
            "microarray/; name that one, and the donor if you want it alone",
            options={"data_dir": str(parent), "donors": one.group(1)},
        )
    if path.name != "microarray" and not (path / "microarray").exists() and any(path.glob(_FOLDER.format("*"))):
        return path  # donor folders straight in it, as a download by hand may leave them
    return path if path.name == "microarray" else path / "microarray"


def resolve_donors(donors, root: Path | None = None) -> list[str]:
    """Short donor ids (abagen's, sorted numerically) for a request.

    ``None``: every donor folder present under ``root`` (all six when ``root`` is None);
    ``'all'``: all six; else one id / UID or a list of them (str or int).
    """
    if donors is None and root is not None:
        found = [
            m.group(1)
            for p in sorted(Path(root).glob(_FOLDER.format("*")))
            if p.is_dir() and (m := re.fullmatch(_FOLDER.format(r"(\w+)"), p.name))
        ]
        ids = [d for d in found if d in DONOR_SAMPLES]
        zips = sorted({p for base in (Path(root), Path(root).parent) for p in base.glob(_FOLDER.format("*") + ".zip")})
        if not ids and zips:  # Allen's own download, not yet unpacked
            first = zips[0]
            raise DataNotFoundError(
                f"no AHBA donor folders ({_FOLDER.format('<ID>')}) in {root}, but {len(zips)} donor zip file(s) "
                f"in {first.parent}: unzip each into a folder of its name, e.g. unzip {first} -d "
                f"{first.with_suffix('')}"
            )
        if not ids:
            raise DataNotFoundError(
                f"no AHBA donor folders ({_FOLDER.format('<ID>')}) in {root}: download them with "
                "abagen.fetch_microarray(data_dir=...), or let abagen download the missing ones",
                options={"download": True},
            )
        return sorted(ids, key=int)
    if donors is None or (isinstance(donors, str) and donors == "all"):
        return sorted(DONOR_SAMPLES, key=int)
    if isinstance(donors, (str, int, np.integer)):
        donors = [donors]
    by_uid = {uid: d for d, uid in DONOR_UIDS.items()}
    out = []
    for d in donors:
        d = str(d).strip()
        d = by_uid.get(d, d)
        if d not in DONOR_SAMPLES:
            raise InputError(
                f"unknown AHBA donor {d!r}; donors are {', '.join(DONOR_SAMPLES)} "
                f"(or their UIDs {', '.join(DONOR_UIDS.values())})"
            )
        out.append(d)
    if not out:
        raise InputError("the donor list is empty")
    return sorted(set(out), key=int)


def _donor_files(root: Path, donors: list[str]) -> dict[str, dict[str, Path]]:
    files = {}
    for d in donors:
        folder = root / _FOLDER.format(d)
        paths = {name: folder / name for name in AHBA_FILES}
        for path in paths.values():
            if not path.is_file():
                what = "folder" if not folder.is_dir() else "file"
                raise DataNotFoundError(
                    f"AHBA donor {d}: missing {what} {folder if what == 'folder' else path} "
                    "(abagen.fetch_microarray downloads it), or let abagen download the missing ones",
                    options={"download": True},
                )
        files[d] = paths
    return files


def _say(verbose, msg):
    """Progress of the processing steps: INFO on the brainzarr logger when ``verbose``, else DEBUG."""
    log.log(logging.INFO if verbose else logging.DEBUG, "ahba: %s", msg)


def _read_probes(path: Path, donor: str, reannotated: bool, probes_mod, io_mod) -> pd.DataFrame:
    probes = io_mod.read_probes(str(path))
    if reannotated:
        want = reannotated_probes()["probe_name"]
        missing = want[~want.isin(probes["probe_name"])]
        if len(missing):
            raise InputError(
                f"AHBA donor {donor}: {path} lacks {len(missing)} of the {len(want)} probes of "
                f"abagen's reannotation (e.g. {', '.join(missing.iloc[:3])}); the file is "
                "incomplete (download it again) or not the AHBA's; reannotated=False uses the "
                "file's own annotation"
            )
        probes = probes_mod.reannotate_probes(probes)
    probes = probes.dropna(subset=["entrez_id"])
    probes = probes[probes["gene_symbol"].notna()]
    probes = probes.assign(entrez_id=probes["entrez_id"].astype("int64"))
    return probes


def load_ahba(
    data_dir=None,
    *,
    donors=None,
    genes=None,
    ibf_threshold=0.5,
    probe_selection="diff_stability",
    lr_mirror="bidirectional",
    sample_norm="srs",
    gene_norm="srs",
    corrected_mni=True,
    reannotated=True,
    download=False,
    verbose=False,
) -> xr.Dataset:
    """Sample x gene expression of the real AHBA, processed as abagen does.

    Parameters
    ----------
    data_dir : path, optional
        Folder holding ``microarray/`` (or ``microarray/`` itself) with the donor folders
        ``normalized_microarray_donor<ID>/`` that ``abagen.fetch_microarray`` downloads.
        Default: ``$ABAGEN_DATA``, else ``~/abagen-data`` (abagen's places).
    donors : None, 'all', str/int or list, optional
        Donor ids (9861, 10021, 12876, 14380, 15496, 15697) or UIDs (H0351.2001, ...).
        None: every donor folder present (with ``download=True``: all six).
    genes : None, int or list of str, optional
        None: every gene that passes the filters; int N: N genes evenly spaced through them;
        list (or comma-separated str): those symbols (:func:`~brainzarr.sources.table.resolve_genes`;
        a symbol not among them raises ``UnknownGeneError``). Normalisation always runs over
        all genes, so a subset holds the same values as the full table.
    ibf_threshold : float in [0, 1]
        Intensity-based filter: keep probes present (PACall 1) in at least this fraction of
        all samples of all donors. Default 0.5.
    probe_selection : {'diff_stability', 'average', 'mean', 'max_intensity', 'max_variance'}
        How one value per gene is made from its probes (abagen's methods, ``donor_probes=
        'aggregate'``). Default 'diff_stability' (needs two or more donors).
    lr_mirror : {'bidirectional', 'leftright', 'rightleft', None}
        Mirror samples across the midline (x negated, contralateral structure): both ways,
        left to right, right to left, or not at all. Mirrored copies are added as samples of
        their own (``mirrored`` coordinate True). Default 'bidirectional'.
    sample_norm, gene_norm : str or None
        abagen normalisations (``abagen.correct.normalize_expression``): each sample across
        genes, then each gene across the donor's samples. Default 'srs' (scaled robust
        sigmoid, values in [0, 1]); None skips the step.
    corrected_mni : bool
        Use the corrected MNI coordinates abagen ships (alleninf) instead of those in
        ``SampleAnnot.csv``. Default True.
    reannotated : bool
        Use abagen's probe reannotation (Arnatkeviciute et al. 2019); needs all 45,892
        reannotated probes in ``Probes.csv``. Default True.
    download : bool
        Let ``abagen.fetch_microarray`` download missing donors (about 4 GB for all six).
    verbose : bool
        Print progress to stderr.

    Returns
    -------
    xarray.Dataset
        The sample table: ``expression (sample, gene)`` float32; on ``sample``: ``x, y, z``
        (MNI mm), ``donor``, ``hemisphere`` ('L'/'R', 'M' on the midline), ``structure``
        (abagen's class: cortex, subcortex/brainstem, cerebellum, white matter, other, or
        'unknown'), ``well_id``, ``structure_id``, ``structure_acronym``, ``mirrored``; on
        ``gene``: the symbol, ``entrez_id``, ``probe_id`` (the chosen probe; -1 when probes
        are averaged), ``n_probes`` (filtered probes of the gene). ``attrs['source']`` is
        'abagen'; ``attrs['options']`` (JSON) holds every setting, the donors and the
        abagen version.

    Raises
    ------
    DataNotFoundError
        A donor folder or one of its five files is missing (the message names both).
    InputError
        Bad settings, ``diff_stability`` with one donor, an incomplete ``Probes.csv`` with
        ``reannotated=True``, or no probe passing the filter.
    UnknownGeneError
        A requested gene is not among those passing the filters.
    """
    if lr_mirror is True:
        lr_mirror = "bidirectional"
    elif lr_mirror is False:
        lr_mirror = None
    if lr_mirror not in _MIRROR:
        raise InputError(f"lr_mirror must be one of {list(_MIRROR)}, not {lr_mirror!r}")
    if probe_selection not in abagen_compat.PROBE_SELECTIONS:
        raise InputError(
            f"probe_selection must be one of {list(abagen_compat.PROBE_SELECTIONS)}, not {probe_selection!r}"
        )
    checked(ibf_threshold, "ibf_threshold", Bound(0, 1))  # float() took True as 1 and stopped on text
    root = microarray_dir(data_dir)

    abagen, io, probes_, samples_, correct = _abagen()
    if download:
        donor_ids = resolve_donors("all" if donors is None else donors)
        root.mkdir(parents=True, exist_ok=True)  # so abagen stores exactly here
        _say(verbose, f"fetching donors {', '.join(donor_ids)} into {root} (abagen)")
        with _quiet_abagen():
            abagen.fetch_microarray(data_dir=str(root), donors=donor_ids, verbose=int(verbose))
    else:
        donor_ids = resolve_donors(donors, root)
    files = _donor_files(root, donor_ids)
    if probe_selection == "diff_stability" and len(donor_ids) < 2:
        raise InputError(
            f"the diff_stability probe selection compares donors: it needs two or more (donor {donor_ids[0]} "
            "alone); use more donors, or average each gene's probes",
            options={"probe_selection": "average"},
        )

    with _quiet_abagen():
        # 1. probes (Probes.csv is the same for every donor; abagen reads the first)
        first = donor_ids[0]
        probe_info = _read_probes(files[first]["Probes.csv"], first, reannotated, probes_, io)
        _say(verbose, f"{len(probe_info)} probes with a gene{' (reannotated)' if reannotated else ''}")
        if genes is not None and not isinstance(genes, (int, np.integer)):
            # a symbol no probe measures fails now, not after the donors' expression files are read
            try:
                resolve_genes(genes, np.unique(probe_info["gene_symbol"].astype(str)))
            except UnknownGeneError as err:
                raise UnknownGeneError(f"{err} (no probe of Probes.csv measures it)") from None

        # 2. samples: coordinates, mirroring, hemisphere check, structure class
        annotation = {}
        for d in donor_ids:
            annot = io.read_annotation(str(files[d]["SampleAnnot.csv"]))
            ontology = io.read_ontology(str(files[d]["Ontology.csv"]))
            if corrected_mni:
                try:
                    annot = samples_.update_mni_coords(annot)
                except KeyError as err:
                    raise InputError(
                        f"AHBA donor {d}: {files[d]['SampleAnnot.csv']} has well ids "
                        "without corrected MNI coordinates (use corrected_mni=False)"
                    ) from err
            if lr_mirror is not None:
                annot = samples_.mirror_samples(annot, ontology, swap=lr_mirror)
            annot = annot.assign(mirrored=annot.index.duplicated(keep="first"))
            annot = samples_.drop_mismatch_samples(annot, ontology)
            annotation[d] = annot
            _say(
                verbose,
                f"donor {d}: {int((~annot['mirrored']).sum())} samples + {int(annot['mirrored'].sum())} mirrored",
            )

        # 3. intensity-based filter (PACall read donor by donor)
        pacall = {d: str(files[d]["PACall.csv"]) for d in donor_ids}
        try:
            probe_info = probes_.filter_probes(pacall, annotation, probe_info, threshold=ibf_threshold)
        except KeyError as err:
            raise InputError(
                "a PACall.csv lacks rows for probes of Probes.csv, or columns for "
                f"samples of SampleAnnot.csv (donors {', '.join(donor_ids)})"
            ) from err
        if len(probe_info) == 0:
            raise InputError(f"no probe passes the intensity-based filter at {ibf_threshold}")
        _say(verbose, f"{len(probe_info)} probes pass the intensity filter at {ibf_threshold}")

        # 4. one value per gene
        donor_probes = []
        for d in donor_ids:
            micro = io.read_microarray(str(files[d]["MicroarrayExpression.csv"]))
            try:
                values = micro.loc[probe_info.index].to_numpy(dtype=np.float64)
            except KeyError as err:
                raise InputError(
                    f"AHBA donor {d}: {files[d]['MicroarrayExpression.csv']} lacks rows for probes listed in Probes.csv"
                ) from err
            annot = annotation[d]
            columns = micro.columns.get_indexer(annot.index)
            if (columns < 0).any():
                raise InputError(
                    f"AHBA donor {d}: SampleAnnot.csv has more samples than MicroarrayExpression.csv has columns"
                )
            del micro
            donor_probes.append(abagen_compat.DonorProbes(values, columns, annot["structure_id"].to_numpy()))
        collapsed = abagen_compat.collapse_probes(
            donor_probes, probe_info["gene_symbol"].to_numpy(), probe_info.index.to_numpy(), method=probe_selection
        )
        _say(verbose, f"{len(collapsed.genes)} genes after probe selection ({probe_selection})")

        # 5. normalisation, donor by donor
        blocks, finite = [], np.ones(len(collapsed.genes), dtype=bool)
        for dp in donor_probes:
            exp = pd.DataFrame(abagen_compat.donor_expression(dp, collapsed), columns=collapsed.genes)
            dp.values = None  # free the probe matrix
            if sample_norm is not None:
                exp = correct.normalize_expression(exp.T, norm=sample_norm, ignore_warn=True).T
            if gene_norm is not None:
                exp = correct.normalize_expression(exp, norm=gene_norm, ignore_warn=True)
            values = exp.to_numpy(dtype=np.float32)
            finite &= np.isfinite(values).all(axis=0)
            blocks.append(values)
    if not finite.any():
        raise InputError("no gene has finite values in every donor after normalisation")

    available = collapsed.genes[finite]
    try:
        chosen = resolve_genes(genes, available)
    except UnknownGeneError as err:
        raise UnknownGeneError(
            f"{err} (genes removed by the intensity-based filter at "
            f"{ibf_threshold} or by normalisation are unknown here)"
        ) from None
    pick = np.searchsorted(collapsed.genes, chosen)  # genes are sorted
    values = np.concatenate([b[:, pick] for b in blocks], axis=0)
    del blocks

    annot = pd.concat([annotation[d].assign(donor=d) for d in donor_ids])
    xyz = annot[["mni_x", "mni_y", "mni_z"]].to_numpy(dtype=float)
    hemisphere = annot["hemisphere"].replace({"B": "M"}).to_numpy().astype(str)
    structure = annot["structure"].fillna("unknown").to_numpy().astype(str)
    mirrored = annot["mirrored"].to_numpy(dtype=bool)
    well = annot["well_id"].to_numpy(dtype=np.int64)
    sample_id = [f"{d}-{w}" + ("-mirror" if m else "") for d, w, m in zip(annot["donor"], well, mirrored)]
    options = {
        "data_dir": str(root),
        "donors": donor_ids,
        "genes": genes if genes is None or isinstance(genes, (int, np.integer)) else list(chosen),
        "ibf_threshold": float(ibf_threshold),
        "probe_selection": probe_selection,
        "donor_probes": "aggregate",
        "lr_mirror": lr_mirror,
        "sample_norm": sample_norm,
        "gene_norm": gene_norm,
        "norm_matched": False,
        "region_agg": None,
        "corrected_mni": bool(corrected_mni),
        "reannotated": bool(reannotated),
        "n_probes_after_filter": int(len(probe_info)),
        "n_genes_dropped_nonfinite": int((~finite).sum()),
        "abagen_version": abagen.__version__,
    }
    table = make_sample_table(
        values,
        chosen,
        xyz,
        donor=annot["donor"].to_numpy(),
        structure=structure,
        hemisphere=hemisphere,
        sample_id=sample_id,
        source="abagen",
        options=json.loads(json.dumps(options, default=str)),
    )
    table = table.assign_coords(
        well_id=("sample", well),
        structure_id=("sample", annot["structure_id"].to_numpy(dtype=np.int64)),
        structure_acronym=("sample", np.asarray(annot["structure_acronym"], dtype=str)),
        mirrored=("sample", mirrored),
        entrez_id=(
            "gene",
            probe_info.groupby("gene_symbol")["entrez_id"].first().reindex(chosen).to_numpy(dtype=np.int64),
        ),
        probe_id=("gene", collapsed.probe_id[pick].astype(np.int64)),
        n_probes=("gene", collapsed.n_probes[pick].astype(np.int64)),
    )
    _say(verbose, f"sample table: {table.sizes['sample']} samples x {table.sizes['gene']} genes")
    return table
