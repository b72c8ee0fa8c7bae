"""Files that are not volumes (a GIFTI surface map, a CIFTI file), given where brainzarr reads an
image in MNI space, are named for what they are; they raised AttributeError."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel import cifti2

from brainzarr import build_store, from_nifti, open_store, parcellate
from brainzarr.cli import main
from brainzarr.evaluate import load_embedding, load_targets
from brainzarr.exceptions import InputError
from brainzarr.nifti import write_nifti
from brainzarr.sources.parcellated import load_parcellated


def _gifti(path):
    values = np.random.default_rng(0).random(642).astype(np.float32)
    nib.save(nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(values)]), path)
    return path


def _cifti(path):
    brain = np.zeros((4, 4, 4), bool)
    brain[1:3, 1:3, 1:3] = True
    axes = (cifti2.ScalarAxis(["map"]), cifti2.BrainModelAxis.from_mask(brain, affine=np.eye(4)))
    nib.save(cifti2.Cifti2Image(np.ones((1, int(brain.sum())), np.float32), header=axes), path)
    return path


@pytest.mark.parametrize(
    "make, kind",
    [(_gifti, r"a surface map \(GIFTI\)"), (_cifti, "a CIFTI grayordinate map")],
    ids=["gifti", "cifti"],
)
def test_a_surface_or_cifti_file_is_named_for_what_it_is_wherever_a_volume_is_read(
    small_store, tmp_path, capsys, make, kind
):
    path = make(tmp_path / ("lh.map.func.gii" if make is _gifti else "map.dscalar.nii"))
    ds = open_store(small_store)
    why = f"{path.name} is {kind}, not a volume: .*project the map into the volume first"
    table = tmp_path / "regions.csv"
    pd.DataFrame({"label": [1], "APOE": [0.5]}).to_csv(table, index=False)
    readers = {
        "from_nifti": lambda: from_nifti(path, ds),
        "parcellate": lambda: parcellate(ds.expression.isel(gene=0), path),
        "build mask": lambda: build_store(tmp_path / "s.zarr", mask=path, genes=3),
        "like=": lambda: write_nifti(ds.expression.isel(gene=0), tmp_path / "g.nii.gz", like=path),
        "parcellated atlas": lambda: load_parcellated(table, path),
    }
    for read in readers.values():
        with pytest.raises(InputError, match=why):
            read()
    in_memory = (
        lambda img: from_nifti(img, ds),
        lambda img: load_targets({"map": img}, ds),
        lambda img: build_store(tmp_path / "s.zarr", mask=img, genes=3),
        lambda img: load_parcellated(table, img),
    )
    for read in in_memory:
        with pytest.raises(InputError, match=f"(image|mask|atlas) is {kind}, not a volume"):
            read(nib.load(path))
    # target maps and embeddings: a surface map given by name is said to be one, as the image is
    for read in (lambda: load_targets(path, ds), lambda: load_embedding(path, ds, name="e")):
        with pytest.raises(ValueError, match=why):
            read()
    if make is _gifti:  # a folder of surface maps holds no target map, and says what it holds
        with pytest.raises(FileNotFoundError, match=f"it holds 1 GIFTI surface map.*{path.name}.*project them"):
            load_targets(tmp_path, ds)
    argv = ["parcellate", str(small_store), "expression", "--atlas", str(path), "-o", str(tmp_path / "p.csv")]
    assert main(argv) == 1
    assert capsys.readouterr().err.count(f"{path.name} is ") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "regions.csv"])
