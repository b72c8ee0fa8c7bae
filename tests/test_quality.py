"""The tree passes ruff (lint and format) and the docs build without a warning: CI runs both
through this suite, the one command .ci/run calls."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name):
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[dev,docs]' (it is in the [all] extra)")
    return path


def test_ruff_lint_and_format():
    ruff = _tool("ruff")
    # a virtualenv made inside the checkout under any name (ruff skips only .venv and venv)
    # holds other projects' code
    venvs = [arg for d in ROOT.iterdir() if (d / "pyvenv.cfg").is_file() for arg in ("--extend-exclude", d.name)]
    lint = subprocess.run([ruff, "check", *venvs, "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = subprocess.run([ruff, "format", "--check", *venvs, "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout[-3000:]


def test_docs_build_without_warnings(tmp_path):
    mkdocs = _tool("mkdocs")
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()
    assert "WARNING" not in proc.stderr


def test_readme_is_short_and_links_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in ("docs/guide/build.md", "docs/store.md", "docs/benchmarks.md", "CHANGELOG.md", "LICENSE"):
        assert page in readme and (ROOT / page).exists(), page


def _python_blocks(page):
    return [block for language, block in _code_blocks(page) if language == "python"]


def _code_blocks(page) -> list[tuple[str, str]]:
    """A page's fenced code blocks in order: (language, text)."""
    return re.findall(r"```(\w*)\n(.*?)```", (ROOT / page).read_text(), re.S)


def _command_lines(page) -> list[str]:
    """The ``brainzarr`` command lines of a page's shell blocks in order, comments dropped and
    continued lines joined; usage synopses (with [optional] or a|b parts) left out."""
    lines = []
    for language, block in _code_blocks(page):
        if language not in ("bash", "console", "sh"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#", line)[0].strip()
            if line.startswith("brainzarr ") and not re.search(r"\[|\.\.\.|\|", line):
                lines.append(line)
    return lines


def test_the_readmes_python_tour_and_the_store_pages_example_run_as_written(tmp_path, monkeypatch):
    """A reader copies them as they stand: every name they use exists (e.g. the gene the tour
    exports is among the store's 300), and the paths they open are the store's."""
    monkeypatch.chdir(tmp_path)
    (tour,) = _python_blocks("README.md")
    exec(compile(tour, "README.md", "exec"), {})
    assert (tmp_path / "hpca.nii.gz").exists()
    (opening,) = [b for b in _python_blocks("docs/store.md") if "open_store" in b]
    exec(compile(opening, "docs/store.md", "exec"), {})


def test_the_representations_guides_example_runs_as_written(tmp_path, monkeypatch):
    """The guide's Python fragment on the store the README's tour builds."""
    import brainzarr

    monkeypatch.chdir(tmp_path)
    brainzarr.build_store("store/s8.zarr", source="synthetic", resolution=8, genes=300, random_state=1)
    names = {}
    for example in _python_blocks("docs/guide/representations.md"):  # in order, as a reader runs them
        exec(compile(example, "docs/guide/representations.md", "exec"), names)
    assert names["Z"].dims == ("voxel", "component") and names["X_hat"].dims == ("voxel", "gene")
    ds = names["ds"]
    assert names["left_train"].sizes["voxel"] == int(((ds.hemisphere == "L") & (ds.split == "train")).sum())
    assert names["pca_left"].components_.shape == (8, 300)
    table = brainzarr.rmse_table("store/s8.zarr")
    assert list(zip(table["method"], table["dim"])) == [("ae", 8)]


def _label_atlas(path, resolution: int, n_regions: int):
    """Labels 1 .. n_regions over the MNI152 brain at ``resolution`` mm, each voxel taking the
    label of the nearest of ``n_regions`` voxel centres of the 8 mm grid (so that each region
    holds a voxel of an 8 mm store), 0 outside."""
    import nibabel as nib
    import numpy as np
    from scipy.spatial import cKDTree

    from brainzarr.grid import mni152_grid

    coarse = mni152_grid(8).xyz
    centres = coarse[np.linspace(0, len(coarse) - 1, n_regions).astype(int)]
    grid = mni152_grid(resolution)
    volume = np.zeros(grid.shape, np.int16)
    volume[tuple(grid.ijk.T)] = 1 + cKDTree(centres).query(grid.xyz)[1]
    nib.save(nib.Nifti1Image(volume, grid.affine), path)


def _files_the_guides_name():
    """In the working folder: the README tour's store with PCA k = 8, a 4 mm store holding APOE
    and SST with PCA k = 8, the atlases and look-up tables, and a 1 mm image."""
    import nibabel as nib
    import numpy as np

    import brainzarr
    from brainzarr.nifti import FSL_GRIDS

    brainzarr.build_store("store/s8.zarr", source="synthetic", resolution=8, genes=300, random_state=1)
    genes = [*brainzarr.open_store("store/s8.zarr").gene.values[:30].tolist(), "APOE", "SST"]
    brainzarr.build_store("store/s4.zarr", source="synthetic", resolution=4, genes=genes, random_state=1)
    for store in ("store/s8.zarr", "store/s4.zarr"):
        brainzarr.fit_store(store, "pca", 8)
    _label_atlas("dk.nii.gz", 2, 68)
    _label_atlas("dk-1mm.nii.gz", 1, 68)
    _label_atlas("schaefer-400.nii.gz", 2, 400)
    Path("dk_dseg.tsv").write_text("index\tname\n" + "".join(f"{r}\tregion-{r}\n" for r in range(1, 69)))
    hemisphere = ["LH"] * 200 + ["RH"] * 200
    Path("Schaefer_400_order.txt").write_text(
        "".join(f"{r}\t7Networks_{hemisphere[r - 1]}_Vis_{r}\t120\t18\t134\t0\n" for r in range(1, 401))
    )
    shape, affine = FSL_GRIDS["MNI152_T1_1mm"]
    pet = np.random.default_rng(0).random(shape, dtype=np.float32)
    nib.save(nib.Nifti1Image(pet, np.array(affine, float)), "pet-1mm.nii.gz")


def test_the_maps_and_regions_guides_run_as_written(tmp_path, monkeypatch):
    """Each guide's Python fragments and command lines, in the order a reader meets them, on
    files of the names they use: every gene they name is in the store, and no command writes
    over a file an earlier one made (or over its atlas)."""
    import nibabel as nib
    import pandas as pd

    from brainzarr.cli import main

    monkeypatch.chdir(tmp_path)
    _files_the_guides_name()
    for page in ("docs/guide/maps.md", "docs/guide/regions.md"):
        names = {}
        for language, block in _code_blocks(page):
            if language == "python":
                exec(compile(block, page, "exec"), names)
        for line in _command_lines(page):
            assert main(shlex.split(line)[1:]) == 0, f"{page}: {line}"
    shapes = {
        "apoe.nii.gz": (50, 59, 48),  # the store's grid
        "pca-k8.nii.gz": (50, 59, 48, 8),
        "apoe-1mm.nii.gz": (182, 218, 182),  # FSL's
        "two-genes.nii.gz": (50, 59, 48, 2),
        "pca-k8-fsl2mm.nii.gz": (91, 109, 91, 8),
        "hpca-dk.nii.gz": (99, 117, 95),  # the atlas's
        "dk-two-map.nii.gz": (99, 117, 95, 2),
        "split.nii.gz": (50, 59, 48),
    }
    assert {name: nib.load(name).shape for name in shapes} == shapes
    assert all(
        Path(png).stat().st_size > 10_000 for png in ("apoe.png", "apoe-surface.png", "hpca-dk.png", "split.png")
    )
    assert json.loads(Path("split.json").read_text())["Labels"] == {"1": "buffer", "2": "test", "3": "train"}
    for table, columns in {"dk.csv": 300, "dk-max.csv": 300, "dk-named.csv": 301, "dk-two.csv": 2}.items():
        assert pd.read_csv(table, index_col=0).shape == (68, columns), table
    assert names["named"].sizes["region"] == 400 and "region_name" in names["named"].coords
    for image, genes in {"two-genes.json": ["APOE", "SST"], "dk-two-map.json": ["HPCA", "APOA2"]}.items():
        assert json.loads(Path(image).read_text())["VolumeLabels"] == genes  # as the guides say


def test_the_inr_guides_commands_name_genes_its_model_knows():
    """The guide fits its model on 200 synthetic genes; a gene its render or export lines name
    must be one of them (APOE and SST were not: both lines failed as written)."""
    from brainzarr import load_source

    lines = [
        line
        for language, block in _code_blocks("docs/guide/inr.md")
        if language == "bash"
        for line in block.splitlines()
    ]
    assert any("inr fit --source synthetic --genes 200 " in line for line in lines)
    named = {g for line in lines for spec in re.findall(r"--genes? ([A-Za-z][\w,-]*)", line) for g in spec.split(",")}
    assert len(named) >= 2
    known = set(load_source("synthetic", genes=200)["gene"].values.astype(str))
    assert named - known == set()


@pytest.mark.slow
def test_the_inr_guides_example_runs_as_written(tmp_path, monkeypatch):
    """Fits, renders and cross-validates an INR of 200 genes as the guide does (~3 min)."""
    monkeypatch.chdir(tmp_path)
    (example,) = _python_blocks("docs/guide/inr.md")
    exec(compile(example, "docs/guide/inr.md", "exec"), {})
    assert (tmp_path / "store" / "inr-model").is_dir() and (tmp_path / "store" / "inr-2mm.zarr").is_dir()


def test_every_brainzarr_command_line_in_the_docs_parses():
    """Command lines in the README and docs/ name options that exist (usage synopses with
    [optional] or a|b parts are left out)."""
    from brainzarr.cli import make_parser

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    lines = [(page.name, line) for page in pages for line in _command_lines(page.relative_to(ROOT))]
    assert len(lines) > 20
    for page, line in lines:
        try:
            make_parser().parse_args(shlex.split(line)[1:])
        except SystemExit:
            pytest.fail(f"{page}: {line}")


def test_every_benchmark_table_says_date_machine_and_load():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    sections = text.split("\n## ")[1:]
    assert sections
    for section in sections:
        stamp = next((line for line in section.splitlines() if line.startswith("*Measured ")), "")
        assert stamp and "machine" in stamp and ("idle" in stamp or "contended" in stamp), section[:80]


def test_the_package_version_is_the_changelogs_newest():
    """A build of the tree says which release it leads to (0.2.0.dev0 before 0.2.0), in ``--version``,
    the report and every NIfTI sidecar, as the CHANGELOG's newest heading does."""
    import tomllib

    from packaging.version import Version

    version = Version(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])
    heading = re.search(r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE).group(1)
    number = Version(re.search(r"\d+\.\d+\.\d+", heading).group(0))
    if heading.startswith("Unreleased"):
        assert version.is_devrelease and version.release == number.release, (str(version), heading)
    else:
        assert version == number, (str(version), heading)


def _documented_callables():
    """(file, node, docstring) of every function and class in the package with a docstring."""
    import ast

    for path in sorted((ROOT / "brainzarr").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and ast.get_docstring(node):
                yield path.relative_to(ROOT), node, ast.get_docstring(node)


def _section(doc: str, title: str) -> list[str]:
    """The entry lines (not their descriptions) of a numpy docstring section."""
    match = re.search(rf"^{title}\n-+\n(.*?)(?:\n\n[A-Z][A-Za-z ]+\n-+\n|\Z)", doc, re.S | re.M)
    return [line for line in match.group(1).splitlines() if line and not line.startswith(" ")] if match else []


def test_docstrings_document_parameters_that_exist():
    """A parameter renamed (``seed`` -> ``random_state``) or removed leaves no stale entry in the
    numpy docstrings that mkdocstrings renders."""
    import ast

    stale = []
    for path, node, doc in _documented_callables():
        if isinstance(node, ast.ClassDef):
            node = next((b for b in node.body if isinstance(b, ast.FunctionDef) and b.name == "__init__"), None)
            if node is None:
                continue
        a = node.args
        taken = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs} | {x.arg for x in (a.vararg, a.kwarg) if x}
        for entry in _section(doc, "Parameters"):
            names = [n.strip().lstrip("*") for n in entry.split(":")[0].split(",")]
            stale += [f"{path}:{node.lineno} {name}" for name in names if name and name not in taken]
    assert not stale, "documented but not parameters:\n" + "\n".join(stale)


def test_raises_sections_name_brainzarrs_classes():
    """Errors are brainzarr's classes (tests/test_exceptions.py); a docstring that says
    ``ValueError`` where ``InputError`` is raised tells a reader to catch too much."""
    import brainzarr.exceptions as exc

    replaced = {
        base.__name__
        for cls in vars(exc).values()
        if isinstance(cls, type) and issubclass(cls, exc.BrainzarrError)
        for base in cls.__bases__
        if base.__module__ == "builtins" and base not in (Exception, RuntimeError)
    }
    builtin = []
    for path, node, doc in _documented_callables():
        for entry in _section(doc, "Raises"):
            builtin += [f"{path}:{node.lineno} {entry}" for name in re.findall(r"\w+", entry) if name in replaced]
    assert not builtin, "Raises names a builtin; name brainzarr's class:\n" + "\n".join(builtin)
