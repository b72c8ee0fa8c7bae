"""Without an optional package, a job says in one line what to install, before it writes anything.

Each check runs in a fresh interpreter in which the optional packages cannot be imported (an
import hook refuses them), as on ``pip install brainzarr`` without extras.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

ABSENT = ("openTSNE", "umap", "torch", "xgboost")

#: makes the ABSENT packages unimportable in the script it opens
HOOK = f"""
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ImportError(f"No module named {{name!r}}")

sys.meta_path.insert(0, Absent())
"""

SCRIPT = """
import contextlib, io, json, os, sys
{hook}
import numpy as np

from brainzarr import build_store, list_groups
from brainzarr.cli import main

def cli(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue().strip().splitlines()

store = build_store("s.zarr", resolution=8, genes=12, random_state=0)
out = {{}}
out["fit"] = cli("fit", "s.zarr", "--methods", "pca,tsne", "--dims", "2")
out["fit_groups"] = list(list_groups(store))
out["demo"] = cli("demo", "--out-dir", "demo", "--genes", "20")
out["demo_typo"] = cli("demo", "--out-dir", "demo", "--methods", "pca,nope,umap")
out["reproduce"] = cli("reproduce", "s.zarr", "-o", "repro", "--methods", "pca,nmf", "--dims", "2")
out["evaluate"] = cli("evaluate", "s.zarr", "--targets", "pet", "-o", "ev")
out["inr"] = cli("inr", "evaluate", "--source", "synthetic", "--genes", "20", "-o", "inr")
out["written"] = sorted(os.listdir("."))
from brainzarr.exceptions import MissingDependencyError
from brainzarr.models import TSNE, UMAP
for cls in (TSNE, UMAP):
    try:
        cls(n_components=2).fit(np.random.default_rng(0).random((60, 5), dtype=np.float32))
        out[cls.__name__] = None
    except MissingDependencyError as exc:
        out[cls.__name__] = str(exc)
out["imported"] = sorted({{m.split(".")[0] for m in sys.modules}} & set({absent!r}))
print(json.dumps(out))
"""


def test_a_job_without_an_optional_package_names_it_before_it_writes(tmp_path):
    code = textwrap.dedent(SCRIPT.format(hook=HOOK, absent=ABSENT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    # a fit of several methods stops before the first one, not after it
    assert out["fit"] == [1, ["brainzarr fit: error: method 'tsne' needs openTSNE: pip install 'brainzarr[models]'"]]
    assert out["fit_groups"] == []
    # the demo and the study's protocol name every missing package at once, torch's CPU build first
    code, lines = out["demo"]
    assert code == 1 and lines == [
        "brainzarr demo: error: the demo needs openTSNE, umap-learn, torch, xgboost-cpu: "
        "pip install torch==2.13.0 (PyTorch's CPU build), then pip install 'brainzarr[models,evaluate]'"
    ]
    # a typo in --methods comes first: it is the quicker fix
    assert out["demo_typo"] == [
        1,
        ["brainzarr demo: error: unknown method(s) nope; choose from pca, kpca, nmf, tsne, umap, ae"],
    ]
    assert out["reproduce"] == [
        1,
        ["brainzarr reproduce: error: the study's protocol needs xgboost-cpu: pip install 'brainzarr[evaluate]'"],
    ]
    # the evaluation stops before its reconstruction table, not after it
    assert out["evaluate"] == [
        1,
        ["brainzarr evaluate: error: downstream prediction needs xgboost-cpu: pip install 'brainzarr[evaluate]'"],
    ]
    code, lines = out["inr"]
    assert code == 1 and len(lines) == 1 and lines[0].endswith("pip install 'brainzarr[inr]'"), lines
    assert out["written"] == ["s.zarr"]  # no demo/, repro/ or ev/ folder
    assert out["TSNE"] == "t-SNE needs openTSNE: pip install 'brainzarr[models]'"
    assert out["UMAP"] == "UMAP needs umap-learn: pip install 'brainzarr[models]'"
    assert out["imported"] == []


LOADED = """
import json, sys
{hook}
import numpy as np
import xarray as xr

from brainzarr.exceptions import MissingDependencyError
from brainzarr.models import TSNE, UMAP

X = np.load("new.npy")
out = {{}}
for cls in (TSNE, UMAP):
    model = cls.from_dataset(xr.open_zarr(cls.__name__ + ".zarr", consolidated=False))
    out[cls.__name__ + "_inverse"] = model.inverse_transform(np.zeros((3, 2), np.float32)).shape
    try:
        model.transform(X)
        out[cls.__name__] = None
    except MissingDependencyError as exc:
        out[cls.__name__] = str(exc)
out["imported"] = sorted({{m.split(".")[0] for m in sys.modules}} & set({absent!r}))
print(json.dumps(out))
"""


def test_a_loaded_model_names_the_package_its_transform_needs(tmp_path):
    import numpy as np

    from brainzarr.models import TSNE, UMAP

    rng = np.random.default_rng(0)
    X = rng.random((80, 6), dtype=np.float32)
    np.save(tmp_path / "new.npy", rng.random((5, 6), dtype=np.float32))
    for model in (TSNE(n_components=2, random_state=0), UMAP(n_components=2, n_epochs=20, random_state=0)):
        model.fit(X).to_dataset().to_zarr(tmp_path / f"{type(model).__name__}.zarr", consolidated=False)

    code = textwrap.dedent(LOADED.format(hook=HOOK, absent=ABSENT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["TSNE"] == "t-SNE's transform needs openTSNE: pip install 'brainzarr[models]'"
    assert out["UMAP"] == "UMAP's transform needs umap-learn: pip install 'brainzarr[models]'"
    # what the package is not needed for still works
    assert out["TSNE_inverse"] == out["UMAP_inverse"] == [3, 6]
    assert out["imported"] == []
