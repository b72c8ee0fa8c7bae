"""The tree passes ruff (lint and format) and the docs build without a warning: CI runs both
through this suite, the one command .ci/run calls."""

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
    text = (ROOT / page).read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


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
    import re
    import shlex

    from brainzarr.cli import make_parser

    lines = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in re.findall(r"```(?:bash|console|sh)\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.split(r"\s+#", line)[0].strip()
                if line.startswith("brainzarr ") and not re.search(r"\[|\.\.\.|\|", line):
                    lines.append((page.name, line))
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
