import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainzarr.sources import UnknownGeneError, load_source
from brainzarr.sources.abagen_data import DONOR_SAMPLES, corrected_coordinates, study_gene_symbols
from brainzarr.sources.synthetic import LATENT_FACTORS, TISSUES, SyntheticModel, load_synthetic, tissue_class
from brainzarr.sources.table import read_gene_list


@pytest.fixture(scope="module")
def table():
    return load_synthetic(400, random_state=3)


def test_real_sites_donors_and_symbols(table):
    assert table.sizes == {"sample": 3702, "gene": 400, "factor": len(LATENT_FACTORS)}
    counts = table["donor"].to_series().value_counts().to_dict()
    assert counts == DONOR_SAMPLES
    sites = corrected_coordinates()
    np.testing.assert_allclose(table["x"].values, sites["x"].values)
    assert set(table["gene"].values) <= set(study_gene_symbols())
    assert len(study_gene_symbols()) == 15_633


def test_values_look_like_srs_normalised_ahba(table):
    v = table["expression"].values
    assert 0 < v.min() and v.max() < 1
    assert 0.45 < np.median(v) < 0.55
    assert 0.09 < v.std() < 0.15


def test_seeded_and_consistent_across_gene_subsets(table):
    again = load_synthetic(400, random_state=3)
    np.testing.assert_array_equal(again["expression"].values, table["expression"].values)
    genes = list(table["gene"].values[[5, 50, 300]])
    subset = load_synthetic(genes, random_state=3)
    # a gene's values do not depend on the other genes asked for (to float32 rounding: a BLAS
    # may block a matrix product differently for another number of columns)
    np.testing.assert_allclose(subset["expression"].values, table["expression"].sel(gene=genes).values, rtol=2e-6)
    other = load_synthetic(genes, random_state=4)
    assert not np.allclose(other["expression"].values, subset["expression"].values)


def test_truth_is_evaluable_anywhere_and_explains_the_samples(table):
    model = SyntheticModel(random_state=3)
    xyz = np.column_stack([table[c].values for c in "xyz"])
    genes = list(table["gene"].values)
    truth = model.expression(xyz, genes)
    observed = table["expression"].values
    # noise is smaller than the signal and centred on the truth
    resid = observed - truth
    assert abs(resid.mean()) < 0.01
    assert resid.std() < truth.std(axis=0).mean()
    np.testing.assert_allclose(model.latent(xyz), table["latent"].values, atol=1e-5)
    # anywhere: also off the sample sites, smooth over a millimetre
    p = np.array([[10.0, 20.0, 30.0], [10.5, 20.0, 30.0]])
    vals = model.expression(p, genes[:10])
    assert vals.shape == (2, 10) and np.abs(vals[0] - vals[1]).max() < 0.05


def test_latent_structure_is_low_dimensional_and_nonlinear(table):
    # the population truth at the sites lies near a <=10-D nonlinear manifold: a linear
    # 10-D subspace explains most but not all of its variance
    model = SyntheticModel(random_state=3)
    xyz = np.column_stack([table[c].values for c in "xyz"])
    truth = model.expression(xyz, list(table["gene"].values))
    centred = truth - truth.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False) ** 2
    explained10 = s[:10].sum() / s.sum()
    assert 0.9 < explained10 < 0.9999


@settings(max_examples=50, deadline=None)
@given(
    symbols=st.lists(st.from_regex(r"[A-Z][A-Z0-9.-]{0,9}", fullmatch=True), min_size=1, max_size=30, unique=True),
    separators=st.lists(st.sampled_from([",", "\n", " ", ", ", "\t", ";", "\r\n"]), min_size=1),
    comment=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1"]),  # utf-8-sig: a spreadsheet's byte-order mark
)
def test_a_gene_list_file_reads_back_its_symbols(tmp_path_factory, symbols, separators, comment, encoding):
    text = "".join(g + separators[i % len(separators)] for i, g in enumerate(symbols))
    if comment:
        text = "# genes of interest, from a paper\n" + text.replace("\n", "  # a note, SST\n", 1)
    path = tmp_path_factory.mktemp("genes") / "genes.txt"
    path.write_text(text, encoding=encoding)
    assert read_gene_list(path) == symbols


def test_a_gene_list_file_is_a_gene_request(tmp_path):
    path = tmp_path / "genes.txt"
    path.write_text("APOE\nSST  # somatostatin\nPVALB\n")
    assert list(load_source("synthetic", genes=path, random_state=0)["gene"].values) == ["APOE", "SST", "PVALB"]
    for header in ("gene", "gene_symbol", "Symbol"):  # a column's header, as pandas or abagen writes one
        path.write_text(f"{header}\nAPOE\nSST\n")
        assert list(load_source("synthetic", genes=path, random_state=0)["gene"].values) == ["APOE", "SST"]
    path.write_text("GENE\nAPOE\n")  # upper case: a symbol, which the source does not have
    with pytest.raises(ValueError, match="unknown gene"):
        load_source("synthetic", genes=path, random_state=0)
    path.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="lists no genes"):
        load_source("synthetic", genes=path, random_state=0)


def test_tissue_classes():
    cls = tissue_class(np.array([[0, -60, -35], [-40, 10, 40], [12, -5, 5], [0, 0, 300]]))
    assert [TISSUES[c] for c in cls[[0, 3]]] == ["cerebellum", "white_matter"]
    assert TISSUES[cls[2]] in ("deep_grey", "white_matter")


def test_gene_requests():
    t = load_source("synthetic", genes="APOE,SST", random_state=0)
    assert list(t["gene"].values) == ["APOE", "SST"]
    with pytest.raises(UnknownGeneError, match="APOEE.*did you mean APOE"):
        load_source("synthetic", genes="APOEE", random_state=0)
    with pytest.raises(UnknownGeneError, match=r"apoe \(did you mean APOE\?\); Sst \(did you mean SST\?\)"):
        load_source("synthetic", genes="apoe,Sst", random_state=0)
    with pytest.raises(ValueError, match="asked for 20,000 genes; this source has 1 to 15,633"):
        load_source("synthetic", genes=20_000)
    # iterating them said only "'float' object is not iterable"; a whole float is the number
    for bad in (2.5, True, object()):
        with pytest.raises(TypeError, match=r"genes must be None \(all\), a number of genes, .*; got "):
            load_source("synthetic", genes=bad)
    assert load_source("synthetic", genes=3.0, random_state=0).sizes["gene"] == 3
    with pytest.raises(ValueError, match="the gene list names APOE, SST more than once"):
        load_source("synthetic", genes="SST,APOE,SST,GAD1,APOE", random_state=0)
    with pytest.raises(ValueError, match="unknown donor"):
        load_synthetic(5, donors=["123"])
    assert set(load_synthetic(5, donors=["9861"])["donor"].values) == {"9861"}
    with pytest.raises(ValueError, match="unknown source"):
        load_source("nope")


def test_the_models_settings_outside_their_range_are_refused_naming_them():
    """numpy drew with a negative noise_sd as its magnitude and took True as 1; hidden=2.5 and
    signal_scale="a" stopped in numpy. A whole float is the number (hidden=4.0 is 4 units)."""
    for options, message in (
        ({"noise_sd": -1}, "noise_sd must be at least 0, got -1"),
        ({"donor_sd": True}, "donor_sd must be at least 0, got True"),
        ({"hidden": 2.5}, r"hidden must be at least 1 \(a whole number\), got 2.5"),
        ({"hidden": 0}, r"hidden must be at least 1 \(a whole number\), got 0"),
        ({"length_scale_mm": -5}, "length_scale_mm must be above 0, got -5"),
        ({"signal_scale": "a"}, "signal_scale must be at least 0, got 'a'"),
    ):
        with pytest.raises(ValueError, match=rf"^{message}$"):
            load_source("synthetic", genes=3, random_state=0, **options)
    four = load_source("synthetic", genes=3, random_state=0, hidden=4.0)
    np.testing.assert_array_equal(four["expression"].values, load_synthetic(3, hidden=4)["expression"].values)
