"""The real-AHBA source on small, format-faithful donor folders (tests/ahba_fixture.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from ahba_fixture import leaf_id, write_donor_folders  # noqa: E402

from brainzarr.cli import error_message, main  # noqa: E402
from brainzarr.exceptions import InputError  # noqa: E402
from brainzarr.sources import abagen_compat as compat  # noqa: E402
from brainzarr.sources.abagen_data import corrected_coordinates  # noqa: E402
from brainzarr.sources.ahba import load_ahba, resolve_donors  # noqa: E402
from brainzarr.sources.table import UnknownGeneError, validate_sample_table  # noqa: E402

DONORS = ("9861", "10021", "12876")  # two with both hemispheres, one left-only
N = 16  # samples per donor: every leaf structure once per hemisphere


@pytest.fixture(scope="module")
def ahba(tmp_path_factory):
    """Three donors, full 45,892-probe reannotation, N samples each."""
    return write_donor_folders(tmp_path_factory.mktemp("ahba"), donors=DONORS, n_samples=N)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Two donors with only a few hundred probes (for reannotated=False)."""
    return write_donor_folders(
        tmp_path_factory.mktemp("ahba_small"), donors=("9861", "10021"), n_samples=20, reannotated=False, seed=1
    )


@pytest.fixture(scope="module")
def study(ahba):
    """The reference study's settings, all donors found in the folder."""
    return load_ahba(ahba.root)


def _original(table):
    return table.isel(sample=~table["mirrored"].values)


# --- the study's settings, end to end ------------------------------------------------------


def test_study_settings_table(study, ahba):
    validate_sample_table(study)
    assert study["expression"].dtype == np.float32
    assert study.attrs["source"] == "abagen"
    opts = json.loads(study.attrs["options"])
    assert opts["ibf_threshold"] == 0.5 and opts["probe_selection"] == "diff_stability"
    assert opts["lr_mirror"] == "bidirectional" and opts["corrected_mni"] and opts["reannotated"]
    assert opts["sample_norm"] == opts["gene_norm"] == "srs"
    assert opts["donors"] == list(DONORS) and opts["abagen_version"]
    # every sample has a side (no x == 0 here), so bidirectional mirroring doubles them
    assert study.sizes["sample"] == 2 * N * len(DONORS)
    assert int(study["mirrored"].sum()) == N * len(DONORS)
    assert sorted(set(study["donor"].values)) == sorted(DONORS)
    assert set(study["hemisphere"].values) == {"L", "R"}
    assert set(study["structure"].values) == {"cortex", "subcortex/brainstem", "cerebellum", "white matter"}
    assert list(study["gene"].values) == sorted(study["gene"].values)
    assert len(set(study["sample"].values)) == study.sizes["sample"]


def test_srs_output_in_unit_interval(study):
    x = study["expression"].values
    assert np.isfinite(x).all()
    assert x.min() >= 0.0 and x.max() <= 1.0
    # gene srs rescales each gene to [0, 1] within each donor
    for d in DONORS:
        sub = x[study["donor"].values == d]
        np.testing.assert_allclose(sub.min(axis=0), 0.0, atol=1e-6)
        np.testing.assert_allclose(sub.max(axis=0), 1.0, atol=1e-6)


def test_intensity_filter_drops_mostly_absent_probe(study, ahba):
    genes = set(study["gene"].values)
    assert ahba.lowq_gene not in genes  # present in 25 % of samples < 0.5
    # the background genes pass (a gene whose srs is degenerate in a donor may be dropped)
    assert len(set(ahba.background_genes) & genes) >= len(ahba.background_genes) - 3
    assert study.sizes["gene"] < 200  # everything else is absent in ~90 % of samples


def test_lower_threshold_keeps_probe(ahba):
    t = load_ahba(ahba.root, genes=[ahba.lowq_gene], ibf_threshold=0.2)
    assert list(t["gene"].values) == [ahba.lowq_gene]
    assert int(t["probe_id"][0]) == ahba.lowq_probe


def test_diff_stability_picks_the_stable_probe(study, ahba):
    probe = study["probe_id"].to_series()
    assert probe[ahba.stable_gene] == ahba.stable_probe
    assert probe[ahba.triple_gene] == ahba.triple_stable_probe
    assert study["n_probes"].to_series()[ahba.triple_gene] == 3
    # the noisy probe is brighter and more variable: max_intensity / max_variance take it
    for method in ("max_intensity", "max_variance"):
        t = load_ahba(ahba.root, genes=[ahba.stable_gene], probe_selection=method)
        assert int(t["probe_id"][0]) == ahba.noisy_probe


def test_averaging_probes(ahba):
    t = load_ahba(ahba.root, genes=[ahba.stable_gene, ahba.triple_gene], probe_selection="average")
    assert (t["probe_id"].values == -1).all()
    assert list(t["n_probes"].values) == [2, 3] or list(t["n_probes"].values) == [3, 2]


def test_corrected_coordinates_are_used(ahba):
    t = _original(load_ahba(ahba.root, lr_mirror=None, genes=3))
    cc = corrected_coordinates().set_index("well_id").loc[t["well_id"].values]
    np.testing.assert_allclose(np.c_[t.x, t.y, t.z], cc[["x", "y", "z"]].to_numpy())
    raw = load_ahba(ahba.root, lr_mirror=None, genes=3, corrected_mni=False)
    np.testing.assert_allclose(np.c_[raw.x, raw.y, raw.z], np.c_[cc.x * 1.05, cc.y - 3.0, cc.z + 2.0])
    assert json.loads(raw.attrs["options"])["corrected_mni"] is False


def test_bidirectional_mirroring(study):
    orig, mirr = _original(study), study.isel(sample=study["mirrored"].values)
    o = orig.to_dataframe().reset_index()
    m = mirr.to_dataframe().reset_index()
    o = o.drop_duplicates("sample").set_index(["donor", "well_id"])
    m = m.drop_duplicates("sample").set_index(["donor", "well_id"])
    assert set(o.index) == set(m.index)
    m = m.loc[o.index]
    np.testing.assert_allclose(m["x"], -o["x"])
    np.testing.assert_allclose(m[["y", "z"]], o[["y", "z"]])
    assert ((m["hemisphere"].to_numpy() == "R") == (o["hemisphere"].to_numpy() == "L")).all()
    assert (m["structure"].to_numpy() == o["structure"].to_numpy()).all()
    # the contralateral structure of the ontology
    contra = {leaf_id(k, h): leaf_id(k, "R" if h == "L" else "L") for k in range(8) for h in "LR"}
    assert list(m["structure_id"]) == [contra[s] for s in o["structure_id"]]
    assert (m["structure_acronym"].to_numpy() == o["structure_acronym"].to_numpy()).all()
    # a mirrored copy is the same tissue: after normalisation it holds the same values
    ids = {s: i for i, s in enumerate(study["sample"].values)}
    for d, w in list(o.index)[:10]:
        a = study["expression"].values[ids[f"{d}-{w}"]]
        b = study["expression"].values[ids[f"{d}-{w}-mirror"]]
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", [None, "leftright", "rightleft"])
def test_one_way_and_no_mirroring(ahba, mode):
    t = load_ahba(ahba.root, lr_mirror=mode, genes=2)
    orig = _original(t)
    assert orig.sizes["sample"] == N * len(DONORS)
    n_left = int((orig["x"] < 0).sum())
    n_right = orig.sizes["sample"] - n_left
    expect = {None: 0, "leftright": n_left, "rightleft": n_right}[mode]
    assert int(t["mirrored"].sum()) == expect
    if mode:
        mirr = t.isel(sample=t["mirrored"].values)
        side = "R" if mode == "leftright" else "L"
        assert (mirr["hemisphere"].values == side).all()
    # the left-only donor gets no right-to-left copies
    if mode == "rightleft":
        assert not t["mirrored"].values[t["donor"].values == "12876"].any()


# --- genes -----------------------------------------------------------------------------------


def test_gene_subset_holds_the_full_tables_values(study, ahba):
    want = [ahba.triple_gene, ahba.stable_gene]
    t = load_ahba(ahba.root, genes=want)
    assert list(t["gene"].values) == want
    np.testing.assert_array_equal(t["expression"].values, study["expression"].sel(gene=want).values)
    assert list(t["probe_id"].values) == list(study["probe_id"].sel(gene=want).values)
    assert json.loads(t.attrs["options"])["genes"] == want
    t5 = load_ahba(ahba.root, genes=5)
    assert t5.sizes["gene"] == 5 and set(t5["gene"].values) <= set(study["gene"].values)


def test_unknown_and_filtered_genes(ahba, monkeypatch):
    from brainzarr.sources.ahba import _abagen

    abagen_io = _abagen()[1]  # imported as brainzarr imports it (quiet)
    with monkeypatch.context() as patch:  # a symbol no probe measures: known from Probes.csv alone
        patch.setattr(abagen_io, "read_microarray", lambda *a, **k: pytest.fail("read the expression files"))
        with pytest.raises(UnknownGeneError, match=r"NOTAGENE.*\(no probe of Probes.csv measures it\)"):
            load_ahba(ahba.root, genes=["NOTAGENE"])
        lower = ahba.stable_gene.lower()
        with pytest.raises(
            UnknownGeneError, match=rf"unknown gene\(s\): {lower} \(did you mean {ahba.stable_gene}\?\)"
        ):
            load_ahba(ahba.root, genes=lower)
    with pytest.raises(UnknownGeneError, match="intensity-based filter"):
        load_ahba(ahba.root, genes=[ahba.lowq_gene])


# --- files and errors ------------------------------------------------------------------------


def test_missing_donor_and_missing_file(ahba, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"AHBA donor 14380: missing folder") as err:
        load_ahba(ahba.root, donors=["9861", "14380"])
    assert "\n" not in str(err.value)
    root = tmp_path / "data"
    shutil.copytree(
        ahba.root / "microarray" / "normalized_microarray_donor9861",
        root / "microarray" / "normalized_microarray_donor9861",
    )
    (root / "microarray" / "normalized_microarray_donor9861" / "PACall.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"AHBA donor 9861: missing file .*PACall\.csv"):
        load_ahba(root, donors="9861", probe_selection="average")
    with pytest.raises(FileNotFoundError, match="no AHBA donor folders") as err:
        load_ahba(tmp_path / "empty")
    assert str(err.value).endswith("; pass download=True")  # in Python; the command line names its flag
    assert error_message(err.value).endswith("let abagen download the missing ones; pass --download")


def test_donor_zip_files_not_yet_unpacked_are_named(tmp_path):
    # Allen's download, normalized_microarray_donor9861.zip, next to where the folders go
    for where in (tmp_path / "a", tmp_path / "b" / "microarray"):
        where.mkdir(parents=True)
        (where / "normalized_microarray_donor9861.zip").write_bytes(b"PK")
        with pytest.raises(FileNotFoundError, match=r"but 1 donor zip file\(s\) in .*: unzip each") as err:
            load_ahba(where.parent if where.name == "microarray" else where)
        zipped = where / "normalized_microarray_donor9861.zip"
        assert str(err.value).endswith(f"e.g. unzip {zipped} -d {where / 'normalized_microarray_donor9861'}")


def test_the_command_line_offers_its_download_flag(tmp_path, capsys):
    assert main(["build", "--source", "abagen", "--data-dir", str(tmp_path), "-o", str(tmp_path / "s.zarr")]) == 1
    assert capsys.readouterr().err.strip().endswith("; pass --download")
    assert not (tmp_path / "s.zarr").exists()


def test_a_store_built_from_the_donor_folders_says_its_samples_include_their_mirror_images(ahba, tmp_path, capsys):
    # the study mirrors every sample across the midline: twice the samples the donors hold
    counts = {}
    for mirror in ("bidirectional", "none"):
        out = tmp_path / f"{mirror}.zarr"
        argv = ["build", "--source", "abagen", "--data-dir", str(ahba.root), "--genes", "4", "--lr-mirror", mirror]
        assert main([*argv, "-o", str(out), "--quiet"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("source"))
        counts[mirror] = int(line.split()[2].replace(",", ""))
        assert ("with their left-right mirror images: lr_mirror=bidirectional" in line) == (mirror != "none")
    assert counts == {"bidirectional": 2 * len(DONORS) * N, "none": len(DONORS) * N}


def test_data_dir_forms_and_donor_ids(ahba, tmp_path):
    t = load_ahba(ahba.root / "microarray", donors=["H0351.2001", 10021], genes=2)
    assert sorted(set(t["donor"].values)) == ["10021", "9861"]
    # the donor folders straight in the data folder, without microarray/ (a download by hand)
    for donor in DONORS:
        (tmp_path / f"normalized_microarray_donor{donor}").symlink_to(
            ahba.root / "microarray" / f"normalized_microarray_donor{donor}"
        )
    flat = load_ahba(tmp_path, genes=2)
    assert sorted(set(flat["donor"].values), key=int) == list(DONORS)
    xr.testing.assert_identical(flat.drop_attrs(), load_ahba(ahba.root, genes=2).drop_attrs())
    assert resolve_donors("all") == ["9861", "10021", "12876", "14380", "15496", "15697"]
    assert resolve_donors(None, ahba.root / "microarray") == list(DONORS)
    with pytest.raises(ValueError, match="unknown AHBA donor"):
        resolve_donors(["1234"])
    # a donor's own folder: the data folder above it is named, and the donor (it read
    # "no AHBA donor folders in .../normalized_microarray_donor9861/microarray")
    with pytest.raises(InputError, match=r"is the folder of one donor \(9861\), not the data folder") as err:
        load_ahba(ahba.root / "microarray" / "normalized_microarray_donor9861", probe_selection="average")
    assert error_message(err.value).endswith(f"; pass --data-dir {ahba.root} --donors 9861")


def test_settings_validated(ahba):
    with pytest.raises(ValueError, match="needs two or more") as err:
        load_ahba(ahba.root, donors="9861")
    assert error_message(err.value).endswith("; pass --probe-selection average")  # not probe_selection='average'
    with pytest.raises(ValueError, match="probe_selection"):
        load_ahba(ahba.root, probe_selection="pc_loading")
    with pytest.raises(ValueError, match="lr_mirror"):
        load_ahba(ahba.root, lr_mirror="both")
    for bad in (1.5, -0.1, True, "0.5", None):  # float() took True as 1 and stopped on text
        with pytest.raises(ValueError, match=rf"^ibf_threshold must be in \[0, 1\], got {re.escape(repr(bad))}$"):
            load_ahba(ahba.root, ibf_threshold=bad)


def test_reannotation_needs_every_probe(small):
    with pytest.raises(ValueError, match=r"lacks \d+ of the 45892 probes"):
        load_ahba(small.root)


def test_unknown_well_without_corrected_coordinates(small, tmp_path):
    shutil.copytree(small.root / "microarray", tmp_path / "microarray")
    path = tmp_path / "microarray" / "normalized_microarray_donor10021" / "SampleAnnot.csv"
    annot = pd.read_csv(path)
    annot.loc[0, "well_id"] = 99_999_999
    annot.to_csv(path, index=False)
    with pytest.raises(ValueError, match="AHBA donor 10021: .* corrected MNI"):
        load_ahba(tmp_path, reannotated=False)
    t = load_ahba(tmp_path, reannotated=False, corrected_mni=False)
    assert 99_999_999 in t["well_id"].values


def test_own_annotation_with_a_small_probe_set(small):
    t = load_ahba(small.root, reannotated=False)
    genes = set(t["gene"].values)
    assert small.lowq_gene not in genes
    assert not any(g.startswith("LOC7") for g in genes)  # no Entrez id -> dropped
    assert int(t["probe_id"].to_series()[small.stable_gene]) == small.stable_probe
    assert t.sizes["sample"] == 2 * 2 * 20
    assert json.loads(t.attrs["options"])["reannotated"] is False


def test_download_calls_abagen(ahba, monkeypatch):
    import abagen

    calls = []
    monkeypatch.setattr(abagen, "fetch_microarray", lambda **kw: calls.append(kw))
    t = load_ahba(ahba.root, donors=["9861", "10021"], genes=2, download=True, verbose=True)
    assert calls == [{"data_dir": str(ahba.root / "microarray"), "donors": ["9861", "10021"], "verbose": 1}]
    assert t.sizes["gene"] == 2


def test_loading_leaves_the_applications_logging_alone(small):
    """abagen calls logging.basicConfig on import; the application's own must still take effect."""
    code = f"""
import logging
from brainzarr.sources.ahba import load_ahba
load_ahba({str(small.root)!r}, reannotated=False, genes=2)
root = logging.getLogger()
assert root.handlers == [] and root.level == logging.WARNING, (root.handlers, root.level)
logging.basicConfig(level=logging.INFO, format="%(name)s|%(message)s")
logging.getLogger("application").info("shown")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "application|shown" in proc.stderr.splitlines(), proc.stderr


# --- agreement with abagen itself ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bidirectional", pytest.param(None, marks=pytest.mark.slow)])
def test_matches_abagen_where_abagen_runs(ahba, mode):
    """abagen 0.1.3 runs on pandas 3 with probe_selection='average' and mask=None."""
    import abagen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _ = abagen.get_samples_in_mask(
            mask=None,
            data_dir=str(ahba.root),
            donors=list(DONORS),
            probe_selection="average",
            lr_mirror=mode,
            verbose=0,
        )
    ours = load_ahba(ahba.root, probe_selection="average", lr_mirror=mode)
    ref = ref.dropna(axis=1)  # genes abagen leaves NaN in a donor; brainzarr drops them
    assert list(ref.columns) == list(ours["gene"].values)
    assert (ref.index.to_numpy() == ours["well_id"].values).all()
    np.testing.assert_allclose(ours["expression"].values, ref.to_numpy(), atol=1e-6)


def test_diff_stability_matches_abagen(ahba, monkeypatch):
    """abagen's own _diff_stability, with its pandas-3 failure (groupby axis=1) patched."""
    import abagen
    from abagen import io, probes_, samples_, utils

    def groupby_structure_id(microarray, annotation):
        sid = io.read_annotation(annotation)["structure_id"].to_numpy()
        return io.read_microarray(microarray).T.groupby(sid).mean().T

    monkeypatch.setattr(probes_, "_groupby_structure_id", groupby_structure_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = abagen.fetch_microarray(data_dir=str(ahba.root), donors=list(DONORS), verbose=0)
        probes = probes_.reannotate_probes(io.read_probes(files["9861"]["probes"]))
        probes = probes.dropna(subset=["entrez_id"])
        for data in files.values():
            annot = samples_.update_coords(data["annotation"])
            annot = samples_.mirror_samples(annot, data["ontology"])
            data["annotation"] = samples_.drop_mismatch_samples(annot, data["ontology"])
        annotation = utils.flatten_dict(files, "annotation")
        probes = probes_.filter_probes(utils.flatten_dict(files, "pacall"), annotation, probes)
        micro = {d: io.read_microarray(files[d]["microarray"]).loc[probes.index, annotation[d].index] for d in DONORS}
        ref = probes_._diff_stability(micro, probes, annotation)
    ref_probes = sorted(ref["9861"].columns)
    ours = load_ahba(ahba.root, sample_norm=None, gene_norm=None)
    assert sorted(ours["probe_id"].values.tolist()) == ref_probes
    raw = ref["9861"].rename(columns=probes["gene_symbol"].to_dict()).sort_index(axis=1)
    np.testing.assert_allclose(ours["expression"].values[ours["donor"].values == "9861"], raw.to_numpy(), rtol=1e-6)


# --- the compatibility layer -----------------------------------------------------------------


def test_region_average_equals_grouped_mean_of_duplicated_columns():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(7, 5))
    columns = np.array([0, 1, 2, 3, 4, 0, 2])  # two mirrored copies
    sid = np.array([10, 11, 10, 12, 11, 13, 13])
    d = compat.DonorProbes(values, columns, sid)
    means, regions = compat.region_average(d, chunk=3)
    ref = pd.DataFrame(values[:, columns].T).groupby(sid).mean()
    assert list(regions) == list(ref.index)
    np.testing.assert_array_equal(means, ref.to_numpy().T)


def test_spearman_columns():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    a[:3, 1] = a[0, 1]  # ties
    ours = compat.spearman_columns(a, b)
    ref = [spearmanr(a[:, i], b[:, i])[0] for i in range(4)]
    np.testing.assert_allclose(ours, ref)
    assert np.isnan(compat.spearman_columns(np.ones((5, 1)), b[:5, :1])).all()
    assert np.isnan(compat.spearman_columns(a[:1], b[:1])).all()


def test_diff_stability_on_a_tiny_design():
    rng = np.random.default_rng(1)
    pattern = np.arange(6.0)
    donors = []
    for _ in range(3):
        sid = np.repeat(np.arange(6), 3)
        stable = pattern[sid] + rng.normal(0, 0.05, sid.size)
        noisy = rng.normal(0, 5, sid.size)
        donors.append(compat.DonorProbes(np.vstack([noisy, stable]), np.arange(sid.size), sid))
    ds = compat.diff_stability(donors)
    assert ds[1] == pytest.approx(1.0) and ds[0] < 0.9
    col = compat.collapse_probes(donors, ["G", "G"], [501, 502])
    assert list(col.genes) == ["G"] and list(col.probe_id) == [502]
    with pytest.raises(ValueError, match="two donors"):
        compat.diff_stability(donors[:1])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("ABCD"), st.one_of(st.none(), st.integers(-3, 3).map(float))), min_size=1, max_size=12
    )
)
def test_select_max_matches_pandas_idxmax(rows):
    genes = [g for g, _ in rows]
    score = np.array([np.nan if s is None else s for _, s in rows])
    got_genes, got_rows = compat.select_max(score, genes)
    df = pd.DataFrame({"gene_symbol": genes, "score": score})
    expect = {}
    for g, grp in df.groupby("gene_symbol"):
        if grp["score"].notna().any():
            expect[g] = grp["score"].idxmax()  # first maximum, NaN skipped
    assert list(got_genes) == sorted(expect)
    assert list(got_rows) == [expect[g] for g in sorted(expect)]


def test_weighted_moments_count_mirrored_copies():
    rng = np.random.default_rng(2)
    a = compat.DonorProbes(rng.normal(size=(3, 4)), [0, 1, 2, 3, 0, 1], np.zeros(6))
    b = compat.DonorProbes(rng.normal(size=(3, 2)), [0, 1, 1], np.zeros(3))
    full = np.hstack([a.values[:, a.columns], b.values[:, b.columns]])
    mean, std = compat._weighted_moments([a, b])
    np.testing.assert_allclose(mean, full.mean(axis=1))
    np.testing.assert_allclose(std, full.std(axis=1, ddof=1))
