"""Small, format-faithful AHBA donor folders for tests of :mod:`brainzarr.sources.ahba`.

:func:`write_donor_folders` writes ``<root>/microarray/normalized_microarray_donor<ID>/`` with
the five files ``abagen.fetch_microarray`` downloads, laid out as the Allen Institute ships
them (``MicroarrayExpression.csv`` and ``PACall.csv`` without a header, column 0 the probe id;
``Probes.csv``, ``SampleAnnot.csv`` and ``Ontology.csv`` with their real headers). Samples
sit at real well ids of the donor (from abagen's corrected-coordinate file), so abagen's
corrected MNI coordinates apply; the MNI coordinates written into ``SampleAnnot.csv`` are
deliberately *different* (``x * 1.05, y - 3, z + 2``; same sign of x), so a test can tell
which ones were used.

The data are built so that the answers are known (see :class:`FixtureTruth`):

* ``stable_gene``: two probes; probe ``stable_probe`` follows a regional pattern shared by all
  donors (differential stability ~1), probe ``noisy_probe`` is pure noise but has the higher
  mean intensity and variance (so ``max_intensity`` / ``max_variance`` would pick it);
* ``triple_gene``: three probes, only ``triple_stable_probe`` follows a shared pattern;
* ``lowq_gene``: one probe present (PACall 1) in only ~25 % of samples -> removed by the
  intensity-based filter at 0.5;
* ``background_genes``: every probe of these genes is present in ~90 % of samples;
  every other probe is absent (PACall 0) in ~90 % of samples and is filtered out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainzarr.sources.abagen_data import corrected_coordinates, reannotated_probes

FILES = ("MicroarrayExpression.csv", "PACall.csv", "Probes.csv", "SampleAnnot.csv", "Ontology.csv")

# ancestors (id, acronym, name, parent, path); the classification ids are abagen's
_ANCESTORS = [
    (4005, "Br", "brain", None, "/4005/"),
    (4006, "GM", "gray matter", 4005, "/4005/4006/"),
    (4007, "Tel", "telencephalon", 4006, "/4005/4006/4007/"),
    (4008, "CX", "cerebral cortex", 4007, "/4005/4006/4007/4008/"),
    (4249, "HiF", "hippocampal formation", 4007, "/4005/4006/4007/4249/"),
    (4275, "CNU", "cerebral nuclei", 4007, "/4005/4006/4007/4275/"),
    (4391, "DiE", "diencephalon", 4006, "/4005/4006/4391/"),
    (4696, "Cb", "cerebellum", 4006, "/4005/4006/4696/"),
    (9218, "WM", "white matter", 4005, "/4005/9218/"),
]
# sampled leaf structures: (acronym, name, parent id, abagen's class)
LEAVES = [
    ("SFG", "superior frontal gyrus", 4008, "cortex"),
    ("MTG", "middle temporal gyrus", 4008, "cortex"),
    ("PrG", "precentral gyrus", 4008, "cortex"),
    ("CA1", "CA1 field", 4249, "subcortex/brainstem"),
    ("Pu", "putamen", 4275, "subcortex/brainstem"),
    ("TH", "thalamus", 4391, "subcortex/brainstem"),
    ("CbCx", "cerebellar cortex", 4696, "cerebellum"),
    ("cc", "corpus callosum", 9218, "white matter"),
]


def leaf_id(k: int, hemisphere: str) -> int:
    """Structure id of leaf ``k`` in ``hemisphere`` ('L' even, 'R' odd)."""
    return 12000 + 2 * k + (hemisphere == "R")


def ontology_frame() -> pd.DataFrame:
    rows = []
    for n, (sid, acr, name, parent, path) in enumerate(_ANCESTORS):
        rows.append((sid, acr, name, parent, None, n + 1, path, "BFDAE3"))
    paths = {sid: path for sid, *_, path in _ANCESTORS}
    for k, (acr, name, parent, _) in enumerate(LEAVES):
        for hemi, word in (("L", "left"), ("R", "right")):
            sid = leaf_id(k, hemi)
            rows.append((sid, acr, f"{name}, {word}", parent, hemi, len(rows) + 1, f"{paths[parent]}{sid}/", "FF7080"))
    cols = [
        "id",
        "acronym",
        "name",
        "parent_structure_id",
        "hemisphere",
        "graph_order",
        "structure_id_path",
        "color_hex_triplet",
    ]
    df = pd.DataFrame(rows, columns=cols)
    df["parent_structure_id"] = df["parent_structure_id"].astype("Int64")
    return df


@dataclass
class FixtureTruth:
    """What a correct loader must find in the written folders."""

    root: Path
    donors: tuple[str, ...]
    wells: dict[str, np.ndarray]  # donor -> well ids, in SampleAnnot order
    leaf: dict[str, np.ndarray]  # donor -> leaf index of every sample
    probes: pd.DataFrame  # the Probes.csv written (index probe_id)
    stable_gene: str = ""
    stable_probe: int = 0
    noisy_probe: int = 0
    triple_gene: str = ""
    triple_stable_probe: int = 0
    lowq_gene: str = ""
    lowq_probe: int = 0
    background_genes: list[str] = field(default_factory=list)


def _pick_genes(reannot: pd.DataFrame, rng, n_background: int):
    counts = reannot.dropna(subset=["entrez_id"]).groupby("gene_symbol").size()
    two = sorted(counts.index[counts == 2])
    three = sorted(counts.index[counts == 3])
    one = sorted(counts.index[counts == 1])
    stable, triple, lowq = two[100], three[100], one[100]
    pool = sorted(set(counts.index) - {stable, triple, lowq})
    background = sorted(rng.choice(pool, n_background, replace=False).tolist())
    return stable, triple, lowq, background


def _write_headerless(path: Path, probe_id, values, fmt: str) -> None:
    """The Allen layout: no header, probe id then one column per sample (fast writer)."""
    line = "%d" + ("," + fmt) * values.shape[1] + "\n"
    with open(path, "w") as f:
        f.write("".join([line % (p, *row) for p, row in zip(np.asarray(probe_id).tolist(), values.tolist())]))


def write_donor_folders(
    root,
    donors=("9861", "10021"),
    *,
    n_samples: int = 24,
    reannotated: bool = True,
    n_background: int = 150,
    n_extra_probes: int = 40,
    seed: int = 0,
) -> FixtureTruth:
    """Write AHBA donor folders under ``root/microarray`` and return what they contain.

    Parameters
    ----------
    root : path
        Folder that receives ``microarray/``.
    donors : sequence of str
        AHBA donor ids (9861, 10021, 12876, 14380, 15496, 15697).
    n_samples : int
        Samples per donor; half left, half right where the donor has both (else all left).
    reannotated : bool
        True: ``Probes.csv`` holds all 45,892 probes of abagen's reannotation (plus
        ``n_extra_probes`` others, as the real 58,692-probe file does), and the two data files
        a row for each. False: only the probes of the designed and background genes (plus the
        extras), a file of a few hundred rows.
    n_background : int
        Genes whose probes pass the intensity filter besides the designed ones.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    reannot = reannotated_probes().dropna(subset=["entrez_id"])
    stable, triple, lowq, background = _pick_genes(reannot, rng, n_background)
    keep_genes = {stable, triple, lowq, *background}
    all_reannot = reannotated_probes()
    if reannotated:
        probe_rows = all_reannot[["probe_name", "gene_symbol", "entrez_id"]]
    else:
        probe_rows = reannot.loc[reannot["gene_symbol"].isin(keep_genes), ["probe_name", "gene_symbol", "entrez_id"]]
    extra = pd.DataFrame(
        {
            "probe_name": [f"A_23_P{900000 + i}" for i in range(n_extra_probes)],
            "gene_symbol": [f"LOC{700000 + i}" for i in range(n_extra_probes)],
            "entrez_id": np.nan,
        }
    )
    probes = pd.concat([probe_rows, extra], ignore_index=True)
    # real probe ids are integers in no particular relation to the reannotation's row order
    probes.insert(0, "probe_id", 1_020_000 + rng.permutation(len(probes)) * 3)
    probes = probes.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    probes["gene_id"] = np.arange(len(probes)) + 1
    probes["gene_name"] = probes["gene_symbol"].astype(str) + " gene"
    probes["chromosome"] = rng.choice([str(c) for c in range(1, 23)] + ["X"], len(probes))
    probes["entrez_id"] = probes["entrez_id"].astype("Int64")
    probes = probes[["probe_id", "probe_name", "gene_id", "gene_symbol", "gene_name", "entrez_id", "chromosome"]]
    by_gene = probes.groupby("gene_symbol")["probe_id"].apply(list)
    stable_probe, noisy_probe = by_gene[stable]
    triple_probes = by_gene[triple]
    triple_stable = triple_probes[1]
    lowq_probe = by_gene[lowq][0]
    passing = set(probes["probe_id"][probes["gene_symbol"].isin(keep_genes - {lowq})]) | set(
        probes["probe_id"][probes["entrez_id"].isna()]
    )
    # per-leaf patterns shared by every donor and both hemispheres
    n_leaf = len(LEAVES)
    pattern = np.linspace(-1.0, 1.0, n_leaf)
    pattern_b = rng.permutation(pattern)
    gene_pattern = {p: rng.normal(0, 0.6, n_leaf) for p in sorted(passing)}

    coords = corrected_coordinates()
    ontology = ontology_frame()
    truth = FixtureTruth(
        root=root,
        donors=tuple(donors),
        wells={},
        leaf={},
        probes=probes.set_index("probe_id"),
        stable_gene=stable,
        stable_probe=int(stable_probe),
        noisy_probe=int(noisy_probe),
        triple_gene=triple,
        triple_stable_probe=int(triple_stable),
        lowq_gene=lowq,
        lowq_probe=int(lowq_probe),
        background_genes=background,
    )
    pid = probes["probe_id"].to_numpy()
    for d in donors:
        c = coords[coords["donor"] == str(d)]
        left, right = c[c["x"] < 0], c[c["x"] > 0]
        n_right = min(n_samples // 2, len(right)) if len(right) >= n_samples // 2 else 0
        pick = pd.concat([left.iloc[: n_samples - n_right], right.iloc[:n_right]])
        hemi = np.where(pick["x"].to_numpy() < 0, "L", "R")
        # every leaf in every hemisphere the donor has, round robin
        leaf = np.empty(len(pick), dtype=int)
        for h in ("L", "R"):
            m = hemi == h
            leaf[m] = np.arange(m.sum()) % n_leaf
        sid = np.array([leaf_id(k, h) for k, h in zip(leaf, hemi)])
        onto = ontology.set_index("id")
        annot = pd.DataFrame(
            {
                "structure_id": sid,
                "slab_num": rng.integers(1, 30, len(pick)),
                "well_id": pick["well_id"].to_numpy(),
                "slab_type": np.where(leaf == 6, "CB", "CX"),
                "structure_acronym": onto.loc[sid, "acronym"].to_numpy(),
                "structure_name": onto.loc[sid, "name"].to_numpy(),
                "polygon_id": rng.integers(100000, 999999, len(pick)),
                "mri_voxel_x": rng.integers(20, 180, len(pick)),
                "mri_voxel_y": rng.integers(20, 230, len(pick)),
                "mri_voxel_z": rng.integers(20, 180, len(pick)),
                "mni_x": pick["x"].to_numpy() * 1.05,
                "mni_y": pick["y"].to_numpy() - 3.0,
                "mni_z": pick["z"].to_numpy() + 2.0,
            }
        )
        n = len(annot)
        donor_shift = rng.normal(0, 0.3)
        expr = rng.normal(6.0, 1.0, (len(probes), 1)) + rng.normal(0, 0.4, (len(probes), n)) + donor_shift
        rows = {p: i for i, p in enumerate(pid)}
        for p in passing:
            expr[rows[p]] += gene_pattern[p][leaf]
        expr[rows[stable_probe]] = 7.0 + 1.5 * pattern[leaf] + rng.normal(0, 0.1, n)
        expr[rows[noisy_probe]] = 8.0 + rng.normal(0, 2.0, n)
        for p in triple_probes:
            expr[rows[p]] = 8.0 + rng.normal(0, 1.5, n)
        expr[rows[triple_stable]] = 7.5 + 1.2 * pattern_b[leaf] + rng.normal(0, 0.1, n)
        pa = (rng.random((len(probes), n)) < 0.1).astype(int)
        for p in passing:
            pa[rows[p]] = (rng.random(n) < 0.9).astype(int)
        pa[rows[lowq_probe]] = (np.arange(n) % 4 == 0).astype(int)

        folder = root / "microarray" / f"normalized_microarray_donor{d}"
        folder.mkdir(parents=True, exist_ok=True)
        _write_headerless(folder / "MicroarrayExpression.csv", pid, expr, "%.5f")
        _write_headerless(folder / "PACall.csv", pid, pa, "%d")
        probes.to_csv(folder / "Probes.csv", index=False)
        annot.to_csv(folder / "SampleAnnot.csv", index=False)
        ontology.to_csv(folder / "Ontology.csv", index=False)
        truth.wells[str(d)] = annot["well_id"].to_numpy()
        truth.leaf[str(d)] = leaf
    return truth
