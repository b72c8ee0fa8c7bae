import json
import subprocess
import sys

import numpy as np
import pytest

from brainzarr import open_store
from brainzarr.cli import main


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejected an argument
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_build_info_and_rebuild(tmp_path, capsys):
    out = tmp_path / "s.zarr"
    code, stdout, _ = run(
        [
            "build",
            "--source",
            "synthetic",
            "--resolution",
            "8",
            "--genes",
            "12",
            "--seed",
            "1",
            "--out",
            str(out),
            "--assignment",
            "idw",
            "--split",
            "blocked",
        ],
        capsys,
    )
    assert code == 0 and "3,666 voxels x 12 genes" in stdout
    ds = open_store(out)
    assert ds.attrs["provenance"]["assignment"]["method"] == "idw"
    assert ds.attrs["provenance"]["split"]["scheme"] == "blocked"
    code, stdout, _ = run(["info", str(out)], capsys)
    assert code == 0 and "8 mm" in stdout and "train" in stdout
    lines = {line[:11].strip(): line[12:] for line in stdout.splitlines()}
    assert lines["storage"] == (
        "uint16 (steps of 1/65,535 over [0, 1], read as float32), zstd + crc32c, "
        "chunks of 3,666 voxels x 12 genes in 1 shard file of 3,666 x 12"
    )
    assert lines["assignment"] == "idw, n_neighbors=10, same_hemisphere=False"
    assert lines["source"] == "synthetic  3,702 samples, donors 9861, 10021, 12876, 14380, 15496, 15697"  # numerically
    code, _, err = run(["build", "--resolution", "8", "--genes", "13", "--out", str(out)], capsys)
    assert code == 1 and "other settings" in err and "--overwrite" in err


def test_named_genes(tmp_path, capsys):
    out = tmp_path / "g.zarr"
    code, _, _ = run(["build", "--genes", "APOE,SST", "--out", str(out)], capsys)
    assert code == 0
    assert list(open_store(out)["gene"].values) == ["APOE", "SST"]


def test_genes_from_a_file(tmp_path, capsys):
    listed = tmp_path / "genes.txt"
    listed.write_text("# cell-type markers\nSST\nPVALB, VIP\n")
    out = tmp_path / "g.zarr"
    code, _, err = run(["build", "--genes", str(listed), "--out", str(out)], capsys)
    assert code == 0, err
    ds = open_store(out)
    assert list(ds["gene"].values) == ["SST", "PVALB", "VIP"]
    # the store records the symbols, so its rebuild command does not need the file
    assert ds.attrs["provenance"]["build_args"]["genes"] == "SST,PVALB,VIP"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "--genes", "APOEX", "--out", "{tmp}/x.zarr"], "unknown gene(s): APOEX"),
        (["build", "--genes", "{tmp}/genes.txt", "--out", "{tmp}/x.zarr"], "no gene list file"),
        (["build", "--source", "abagen", "--out", "{tmp}/x.zarr"], "needs --data-dir"),
        (
            ["build", "--source", "abagen", "--data-dir", "{tmp}/nothing", "--donors", "9861", "--out", "{tmp}/x.zarr"],
            "9861",
        ),
        (["build", "--source", "parcellated", "--out", "{tmp}/x.zarr"], "needs --table and --atlas"),
        (["build", "--chunks", "12", "--out", "{tmp}/x.zarr"], "--chunks"),
        (["build", "--mask", "{tmp}/none.nii.gz", "--out", "{tmp}/x.zarr"], "mask file not found"),
        (["info", "{tmp}"], "is a folder, not a Zarr store (it has no zarr.json): build a store first"),
        (["info", "{tmp}/none.zarr"], "no store"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run(argv, capsys)
    assert code != 0
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_mask_is_its_own_grid_and_a_resolution_beside_it_must_agree(tmp_path, capsys):
    """``--resolution 8 --mask mask-4mm.nii.gz`` built on the mask's 4 mm voxels, ignoring the 8:
    refused now, before anything is written; the mask's own voxel size, or none, builds."""
    import nibabel as nib

    from brainzarr.grid import mni152_grid

    grid = mni152_grid(4)
    mask = np.zeros(grid.shape, np.uint8)
    mask[tuple(grid.ijk[grid.xyz[:, 0] < 0].T)] = 1  # the left hemisphere
    nib.save(nib.Nifti1Image(mask, grid.affine), tmp_path / "left-4mm.nii.gz")
    argv = ["build", "--genes", "3", "--mask", str(tmp_path / "left-4mm.nii.gz")]
    code, _, err = run([*argv, "--resolution", "8", "-o", str(tmp_path / "a.zarr")], capsys)
    assert code == 1 and "has its own grid (4 x 4 x 4 mm voxels), which --resolution 8 does not change" in err
    assert not (tmp_path / "a.zarr").exists()
    for name, resolution in (("b.zarr", ["--resolution", "4"]), ("c.zarr", [])):
        assert run([*argv, *resolution, "-o", str(tmp_path / name)], capsys)[0] == 0
        assert open_store(tmp_path / name).sizes["voxel"] == int(mask.sum())


def test_each_message_is_printed_once_when_the_root_logger_has_a_handler(tmp_path, capsys):
    """abagen calls logging.basicConfig on import: the CLI's lines must not appear twice."""
    import logging

    root = logging.getLogger()
    borrowed = logging.StreamHandler(sys.stderr)
    borrowed.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    brainzarr_log = logging.getLogger("brainzarr")
    child = logging.getLogger("brainzarr.commands.build")  # says "built ..."
    before = (
        brainzarr_log.level,
        brainzarr_log.propagate,
        list(brainzarr_log.handlers),
        child.isEnabledFor(logging.INFO),
    )
    root.addHandler(borrowed)
    try:
        code, _, err = run(["build", "--genes", "4", "--out", str(tmp_path / "s.zarr")], capsys)
        assert code == 0 and err.count("built ") == 1 and "INFO:" not in err, err
        assert child.isEnabledFor(logging.INFO) == before[-1]  # the level the modules' loggers cache
        code, _, err = run(["info", str(tmp_path / "none.zarr")], capsys)
        assert code == 1 and err.count("no store at") == 1 and "ERROR:" not in err, err
    finally:
        root.removeHandler(borrowed)
    after = brainzarr_log.level, brainzarr_log.propagate, list(brainzarr_log.handlers), child.isEnabledFor(logging.INFO)
    assert after == before


@pytest.mark.parametrize(
    "argv",
    [
        ["info"],
        ["check"],
        ["fit", "--method", "pca", "--dims", "2"],
        ["evaluate", "-o", "{tmp}/eval"],
        ["report", "-o", "{tmp}/report"],
        ["export", "expression", "--gene", "APOE", "-o", "{tmp}/apoe.nii.gz"],
    ],
    ids=lambda argv: argv[0],
)
def test_a_missing_store_is_the_one_line_a_command_prints(argv, tmp_path, capsys):
    missing = tmp_path / "none.zarr"
    argv = [argv[0], str(missing), *(a.format(tmp=tmp_path) for a in argv[1:])]
    code, out, err = run(argv, capsys)
    assert code == 1 and out == ""
    assert err.strip() == f"brainzarr {argv[0]}: error: no store at {missing}", err
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing written


def test_console_script_reports_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "brainzarr.cli", "info", str(tmp_path / "none.zarr")], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"brainzarr info: error: no store at {tmp_path / 'none.zarr'}"
    proc = subprocess.run(
        [sys.executable, "-m", "brainzarr.cli", "build", "--resolution", "x"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "argument --resolution: expected a positive integer, got 'x'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_build_on_a_local_cluster(tmp_path, capsys):
    pytest.importorskip("distributed")
    out = tmp_path / "d.zarr"
    code, _, _ = run(["build", "--genes", "6", "--workers", "2", "--out", str(out)], capsys)
    assert code == 0
    assert np.isfinite(open_store(out)["expression"].values).all()


def test_readme_commands_and_ci_agree():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    lines = (root / "README.md").read_text().splitlines()
    fence = lines.index("```bash")
    demo_cmd, test_cmd = lines[fence + 1], lines[fence + 2]
    assert demo_cmd.endswith("brainzarr demo") and "torch==2.13.0" in demo_cmd
    assert test_cmd.endswith("pytest") and "torch==2.13.0" in test_cmd
    assert test_cmd in (root / ".ci" / "run").read_text().splitlines()


def test_export_gene_maps_to_nifti(small_store, tmp_path, capsys):
    import nibabel as nib

    ds = open_store(small_store)
    gene = str(ds["gene"].values[2])
    out = tmp_path / "g.nii.gz"
    code, stdout, _ = run(["export", str(small_store), "expression", "--gene", gene, "-o", str(out)], capsys)
    assert code == 0 and "wrote" in stdout
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, ds.attrs["affine"], atol=1e-5)
    vol = np.asarray(img.dataobj)
    np.testing.assert_allclose(
        vol[ds["i"].values, ds["j"].values, ds["k"].values], ds["expression"].sel(gene=gene).values
    )
    two = ",".join(ds["gene"].values[:2])
    code, _, _ = run(
        ["export", str(small_store), "expression", "--gene", two, "-o", str(tmp_path / "two.nii.gz")], capsys
    )
    assert code == 0 and nib.load(tmp_path / "two.nii.gz").shape == tuple(ds.attrs["grid_shape"]) + (2,)
    listed = tmp_path / "genes.txt"
    listed.write_text("\n".join(ds["gene"].values[[5, 1, 9]]) + "\n")
    for genes, n in ((str(listed), 3), ("4", 4)):
        target = tmp_path / f"{n}.nii.gz"
        code, _, err = run(["export", str(small_store), "expression", "--gene", genes, "-o", str(target)], capsys)
        assert code == 0, err
        assert nib.load(target).shape == tuple(ds.attrs["grid_shape"]) + (n,)
    vol = np.asarray(nib.load(tmp_path / "3.nii.gz").dataobj)[ds["i"].values, ds["j"].values, ds["k"].values]
    np.testing.assert_allclose(vol, ds["expression"].isel(gene=[5, 1, 9]).values, rtol=1e-6)
    # each image's JSON sidecar (BIDS) says what it holds: the gene, or the genes of its volumes in order
    described = json.loads((tmp_path / "3.json").read_text())
    assert described["VolumeDimension"] == "gene" and described["VolumeLabels"] == list(ds["gene"].values[[5, 1, 9]])
    assert described["Space"] == ds.attrs["space"] and described["Sources"] == [str(small_store)]
    one = json.loads((tmp_path / "g.json").read_text())
    assert one["gene"] == gene and "VolumeLabels" not in one and one["VoxelSizeMM"] == [8.0, 8.0, 8.0]
    (tmp_path / "mine.json").write_text("{}")  # a sidecar's place taken: refused before anything is written
    code, _, err = run(["export", str(small_store), "expression", "--gene", gene, "-o", str(tmp_path / "mine.nii")],
                       capsys)  # fmt: skip
    assert code == 1 and "mine.json exists; pass --overwrite" in err and not (tmp_path / "mine.nii").exists()
    code, _, err = run(["export", str(small_store), "expression", "--gene", gene, "-o", str(tmp_path / "mine.nii"),
                        "--overwrite"], capsys)  # fmt: skip
    assert code == 1 and "mine.json exists and brainzarr did not write it: give mine.nii another name" in err
    assert (tmp_path / "mine.json").read_text() == "{}" and not (tmp_path / "mine.nii").exists()  # a user's file stays
    like = tmp_path / "g.nii.gz"  # written above: as --like, it is read, so never written over
    before = like.read_bytes()
    code, _, err = run(["export", str(small_store), "expression", "--gene", gene, "-o", str(like), "--like", str(like),
                        "--overwrite"], capsys)  # fmt: skip
    assert code == 1 and "is the --like image, which this command reads" in err and like.read_bytes() == before
    code, _, err = run(["export", str(small_store), "expression", "--gene", gene, "-o", str(out)], capsys)
    assert code == 1 and "exists; pass --overwrite" in err
    code, _, err = run(["export", str(small_store), "expression", "-o", str(out)], capsys)
    assert code == 1 and "choose with --gene" in err
    code, stdout, _ = run(
        ["export", str(small_store), "expression", "--gene", gene, "-o", str(out), "--overwrite"], capsys
    )
    assert code == 0 and stdout.startswith("replaced")
    code, _, err = run(["export", str(small_store), "expression", "--gene", gene, "-o", str(tmp_path)], capsys)
    assert code == 1 and "is a folder" in err and not (tmp_path.parent / (tmp_path.name + ".nii")).exists()
    code, _, err = run(
        ["export", str(small_store), "expression", "--gene", gene, "-o", str(tmp_path / "x.png")], capsys
    )
    assert code == 1 and "must end in .nii or .nii.gz" in err
    code, _, err = run(["export", str(small_store), "representations/none/k2/embedding", "-o", str(out)], capsys)
    assert code == 1 and "no group" in err

    fsl = tmp_path / "fsl.nii.gz"
    code, stdout, _ = run(
        ["export", str(small_store), "expression", "--gene", gene, "-o", str(fsl), "--like", "MNI152_T1_2mm"], capsys
    )
    assert code == 0 and "shape (91, 109, 91)" in stdout
    code, _, err = run(
        ["export", str(small_store), "expression", "--gene", gene, "-o", str(tmp_path / "b.nii"), "--like", "fsl"],
        capsys,
    )
    assert code == 1 and "neither a NIfTI file nor one of FSL's grids" in err and not (tmp_path / "b.nii").exists()


def test_export_of_a_result_or_a_folder_of_results_names_the_arrays_to_choose(tmp_path, capsys):
    from brainzarr import build_store

    store = build_store(tmp_path / "s.zarr", resolution=8, genes=10, random_state=0)
    out = str(tmp_path / "e.nii.gz")
    code, _, err = run(["export", str(store), "representations", "-o", out], capsys)
    assert code == 1 and "no variable representations" in err
    assert run(["fit", str(store), "--methods", "pca,nmf", "--dims", "2", "--quiet"], capsys)[0] == 0
    code, _, err = run(["export", str(store), "representations/random/pca/k2", "-o", out], capsys)
    assert code == 1
    assert "representations/random/pca/k2 is a result; name one of its voxel arrays: " in err
    named = err.split("voxel arrays: ")[1].strip().split(", ")
    assert named[0] == "representations/random/pca/k2/embedding"
    assert set(named) == {f"representations/random/pca/k2/{a}" for a in ("embedding", "reconstruction", "voxel_rmse")}
    code, _, err = run(["export", str(store), "representations/pca/k2", "-o", out], capsys)  # without the split
    assert code == 1 and "representations/pca/k2/embedding" in err
    for folder in ("representations", "representations/random"):
        code, _, err = run(["export", str(store), folder, "-o", out], capsys)
        assert code == 1
        assert "holds results, not an array: representations/random/nmf/k2, representations/random/pca/k2" in err
    code, _, err = run(["export", str(store), "representations/random/pca/k2/nothing", "-o", out], capsys)
    assert code == 1 and "has no variable nothing; it has " in err and "embedding" in err
    code, _, err = run(["export", str(store), "nmf-k2", "-o", out], capsys)  # as the evaluation's tables name it
    assert code == 1 and err.strip().endswith("its embedding is representations/random/nmf/k2/embedding")
    code, _, err = run(["export", str(store), "pca/k2", "-o", out], capsys)  # the last levels of a result
    assert code == 1 and "pca/k2 is short for representations/random/pca/k2, a result; name one of its " in err
    for short in ("pca/k2/embedding", "random/nmf/k2/voxel_rmse"):
        code, _, err = run(["export", str(store), short, "-o", out], capsys)
        full = f"representations/{'random/' * (not short.startswith('random'))}{short}"
        assert code == 1 and err.strip().endswith(f"did you mean {full}?")
        assert run(["export", str(store), full, "-o", out, "--overwrite"], capsys)[0] == 0
    for array in named:  # what the message offers exports (one gene of the reconstruction)
        gene = ["--gene", "1"] if array.endswith("reconstruction") else []
        code, _, err = run(["export", str(store), array, *gene, "-o", out, "--overwrite"], capsys)
        assert code == 0, err
    for array, dims in (("gene", "gene"), ("representations/random/pca/k2/rmse", "split")):  # not maps
        code, _, err = run(["export", str(store), array, "-o", out, "--overwrite"], capsys)
        assert code == 1 and f"{array} has no voxel dimension (dims {dims}); only voxel arrays export" in err
    # a region table written into the store: its image is on its atlas's grid, and the message says how
    import nibabel as nib

    import brainzarr

    ds = brainzarr.open_store(store)
    atlas = tmp_path / "halves.nii.gz"
    halves = (ds["x"] > 0).astype(np.int16) + 1
    nib.save(halves.brain.to_nifti(dtype=np.int16), atlas)
    table = brainzarr.parcellate(ds["expression"], atlas)
    brainzarr.write_group(store, "analyses/halves", table.to_dataset(name="means"))
    code, _, err = run(["export", str(store), "analyses/halves/means", "--gene", "1", "-o", out, "--overwrite"], capsys)
    offered = err.split("in Python, ")[1].split(" writes it there")[0]
    assert code == 1 and "analyses/halves/means is a region table (dims region, gene)" in err
    image = eval(offered.replace("'out.nii.gz'", repr(str(tmp_path / "halves-means.nii.gz"))), {"brainzarr": brainzarr})
    assert image.shape[-1] == ds.sizes["gene"]  # one volume per gene, each region its mean
    # a gene asked of an array without genes: refused, not ignored (the file held every component)
    code, _, err = run(["export", str(store), named[0], "--gene", "1", "-o", out, "--overwrite"], capsys)
    assert code == 1 and "has no gene dimension (dims voxel, component)" in err
    # named without its split (as earlier versions laid results out): the sidecar says which one was read
    code, _, err = run(["export", str(store), "representations/pca/k2/embedding", "-o", out, "--overwrite"], capsys)
    assert code == 0, err
    sidecar = json.loads((tmp_path / "e.json").read_text())
    assert sidecar["variable"] == "representations/random/pca/k2/embedding"
    assert sidecar["Description"].startswith("representations/random/pca/k2/embedding ")


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "{store}", "-o", "{store}"],
        ["evaluate", "{store}", "-o", "{store}/eval"],
        ["reproduce", "{store}", "-o", "{store}/repro"],
        ["export", "{store}", "expression", "--gene", "1", "-o", "{store}/gene.nii.gz"],
        ["parcellate", "{store}", "expression", "--atlas", "a.nii.gz", "-o", "r.csv", "--nifti", "{store}/r.nii.gz"],
        ["build", "--genes", "3", "-o", "{store}/inner.zarr"],
        ["inr", "fit", "--genes", "3", "-o", "{store}/representations/model"],
        ["demo", "-o", "{store}/demo"],
    ],
)
def test_an_output_inside_a_store_is_refused_before_anything_is_written(small_store, tmp_path, capsys, argv):
    # the store would hold files brainzarr did not write there, and --overwrite refuse to remove it
    before = sorted(p.relative_to(small_store) for p in small_store.rglob("*"))
    code, _, err = run([a.replace("{store}", str(small_store)) for a in argv], capsys)
    assert code == 1
    assert err.startswith(f"brainzarr {' '.join(argv[: 2 if argv[0] == 'inr' else 1])}: error: {small_store}")
    assert "which holds only what brainzarr writes there: write elsewhere" in err
    assert sorted(p.relative_to(small_store) for p in small_store.rglob("*")) == before


def test_info_lists_the_results_per_split_and_method_with_dims_in_order():
    from brainzarr.store import results_by_split

    groups = [  # list_groups' order: lexical, k128 before k16 before k2
        "representations/blocked/pca/k2",
        "representations/random/nmf/k8",
        "representations/random/pca/k128",
        "representations/random/pca/k16",
        "representations/random/pca/k2",
        "representations/mine",
    ]
    assert results_by_split(groups) == [
        "representations/blocked: pca k2",
        "representations/random: nmf k8; pca k2, k16, k128",
        "representations/mine",
    ]


def test_accessor_is_registered_by_import():
    import xarray as xr

    import brainzarr  # noqa: F401

    assert hasattr(xr.DataArray([1.0], dims="voxel"), "brain")


def _actions(parser, prefix="brainzarr"):
    """(command, action) for every option and positional of every (sub)command."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{prefix} {name}")
        else:
            yield prefix, action


def test_every_argument_says_what_it_is():
    from brainzarr.cli import make_parser

    found = {
        f"{command} {(action.option_strings or [action.dest])[-1]}": action.help
        for command, action in _actions(make_parser())
    }
    assert "brainzarr export store" in found and "brainzarr inr render model" in found
    assert "brainzarr build --probe-selection" in found
    assert [name for name, text in found.items() if not text] == []
    assert "s3://" in found["brainzarr info store"]


def test_every_option_with_a_default_says_it_in_its_help(capsys):
    """What an option is when left out is in --help: in its own words, else ``(default: ...)``
    (the default --assignment, --seed 0 and --chunks 4096,128 went unsaid)."""
    import argparse

    from brainzarr.cli import main, make_parser

    parser = make_parser()
    unsaid = []
    for command, action in _actions(parser):
        default = action.default
        if not action.option_strings or default is None or default is False or default == argparse.SUPPRESS:
            continue
        formatter = parser._get_formatter()
        if "default" not in formatter._expand_help(action):
            unsaid.append(f"{command} {action.option_strings[-1]}")
    assert unsaid == []
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(see `brainzarr inr`; default: nearest)" in shown  # in the brackets the text ends with
    assert "(default: 0)" in shown and "(default: 4096,128)" in shown
    assert "(default: False)" not in shown and "default 0.2)" in shown  # flags, and defaults said in words


def test_every_output_option_is_spelt_alike():
    from brainzarr.cli import make_parser

    spellings = {"-o", "--out", "--output"}
    outputs = {
        command: set(action.option_strings)
        for command, action in _actions(make_parser())
        if spellings & set(action.option_strings)
    }
    assert {
        "brainzarr build",
        "brainzarr export",
        "brainzarr inr fit",
        "brainzarr inr render",
        "brainzarr demo",
    } <= set(outputs)
    older = {"brainzarr demo": {"--out-dir"}}  # spellings kept from earlier versions
    assert {
        command: options for command, options in outputs.items() if options != spellings | older.get(command, set())
    } == {}
    for spelling in spellings:
        args = make_parser().parse_args(["build", "--resolution", "8", spelling, "s8.zarr"])
        assert args.out == "s8.zarr"


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        (["--n-components", "8"], "; did you mean --dims?"),
        (
            ["--n_components=8", "--random-state", "3"],
            "; did you mean --dims for --n_components, --seed for --random-state?",
        ),
        (["--epochs", "3"], "; did you mean --max-epochs?"),
        (["--seeed", "3"], "; did you mean --seed?"),
        (["--bogus"], ""),
    ],
)
def test_an_unknown_option_names_the_one_it_probably_meant(typed, hint, capsys):
    code, _, err = run(["fit", "s.zarr", *typed], capsys)
    assert code == 2
    assert err == f"brainzarr fit: error: unrecognized arguments: {' '.join(typed)}{hint} (see brainzarr fit --help)\n"


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (
            ["fit", "s.zarr", "--methods", "pca", "nmf"],
            "nmf; --methods takes one comma-separated list: --methods pca,nmf",
        ),
        (
            ["fit", "s.zarr", "--methods=pca", "nmf", "--dims", "2", "8", "16"],
            "nmf 8 16; --methods takes one comma-separated list: --methods pca,nmf; --dims takes one comma-separated "
            "list: --dims 2,8,16",
        ),
        # the second method taken for the store: the store is the word left over
        (
            ["fit", "--methods", "pca", "nmf", "s.zarr"],
            "s.zarr; --methods takes one comma-separated list: --methods pca,nmf",
        ),
        (["export", "s.zarr", "expression", "--gene", "HPCA", "APOE", "-o", "x.nii.gz"], "APOE; --gene takes one"),
    ],
)
def test_words_after_a_list_option_are_pointed_to_one_comma_separated_list(argv, hint, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.startswith(f"brainzarr {argv[0]}: error: unrecognized arguments: {hint}")


def test_a_store_given_to_a_command_that_takes_it_as_an_option_is_pointed_there(capsys):
    code, _, err = run(["inr", "fit", "s.zarr", "-o", "model"], capsys)
    assert code == 2
    assert err.startswith(
        "brainzarr inr fit: error: unrecognized arguments: s.zarr; brainzarr inr fit takes a store as "
        "--store s.zarr (see"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "s8.zarr", "--resolution", "8"],
        ["build", "--genes", "20", "s8.zarr", "--quiet"],
        ["inr", "fit", "--store", "s.zarr", "s8.zarr"],
        ["export", "s.zarr", "expression", "s8.zarr"],
    ],
)
def test_an_output_given_as_a_word_is_pointed_to_o(argv, capsys):
    # every other command takes its store first, so ``brainzarr build s8.zarr`` is natural to type
    code, _, err = run(argv, capsys)
    prog = "brainzarr " + " ".join(argv[: 2 if argv[0] == "inr" else 1])
    assert code == 2
    assert err == (
        f"{prog}: error: the following arguments are required: -o/--out/--output; {prog} takes what it writes "
        f"as -o: {prog} ... -o s8.zarr (see {prog} --help)\n"
    )


def test_a_missing_output_without_a_stray_word_has_no_hint(capsys):
    code, _, err = run(["build", "--resolution", "8", "--genes", "20"], capsys)
    assert code == 2 and "takes what it writes" not in err


@pytest.mark.parametrize("option", ["--targets", "--methods", "--embedding", "--dims"])
def test_a_store_taken_by_an_option_of_several_values_is_named(small_store, tmp_path, option, capsys):
    # "the following arguments are required: store" alone, with the store on the command line
    value = {"--embedding": "mine=c1.nii.gz", "--dims": "2"}.get(option, "pca")
    code, _, err = run(["evaluate", option, value, str(small_store), "-o", str(tmp_path / "e")], capsys)
    assert code == 2
    assert err == (
        f"brainzarr evaluate: error: the following arguments are required: store; {small_store} was taken as one "
        f"of the values of {option}, which takes several: name the store first (brainzarr evaluate {small_store} "
        f"{option} ...) (see brainzarr evaluate --help)\n"
    )
    assert not (tmp_path / "e").exists()


def test_a_method_spelled_in_capitals_is_pointed_to_its_name(small_store, capsys):
    code, _, err = run(["fit", str(small_store), "--methods", "PCA,svd"], capsys)
    assert code == 1
    assert "unknown method(s) PCA, svd (method names are lower case: pca); choose from pca," in err


def test_an_interrupted_fit_says_how_to_keep_what_it_wrote(tmp_path, capsys, monkeypatch):
    # each result is written whole; the same command again would refuse those written
    import brainzarr.models.store_fitting as store_fitting
    from brainzarr import build_store

    store = build_store(tmp_path / "s.zarr", resolution=8, genes=20, random_state=0)
    real, calls = store_fitting.fit_store, []

    def interrupted_after_one(*args, **kwargs):
        calls.append(args[1:3])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(store_fitting, "fit_store", interrupted_after_one)
    argv = ["fit", str(store), "--methods", "pca", "--dims", "2,3", "--quiet"]
    code, _, err = run(argv, capsys)
    assert code == 130 and "interrupted (run it again with --skip-existing to keep the results" in err
    monkeypatch.setattr(store_fitting, "fit_store", real)
    assert run(argv, capsys)[0] == 1  # as said: the same command refuses the result it wrote
    code, _, err = run([*argv, "--skip-existing"], capsys)
    assert code == 0, err
    assert open_store(store).brain.results() == ["representations/random/pca/k2", "representations/random/pca/k3"]


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["exprot", "s.zarr", "split", "-o", "x.nii.gz"], "; did you mean export?"),
        (["inr", "rendr", "model", "-o", "x.zarr"], "; did you mean render?"),
        (["build", "--assignment", "IDW", "-o", "x.zarr"], "; did you mean idw?"),
        (["fit", "s.zarr", "--split", "spatial"], "; did you mean blocked (the spatially blocked split)?"),
        (["build", "--source", "allen", "-o", "x.zarr"], ""),  # nothing close: the choices alone
    ],
)
def test_a_mistyped_choice_is_answered_with_the_closest(argv, hint, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2 and "invalid choice" in err
    assert err.split(")", 1)[1].startswith(f"{hint} (see brainzarr")
