import os

import pytest

os.environ.setdefault("BRAINZARR_PROGRESS", "0")


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """An 8 mm synthetic store with 120 genes (built once per session)."""
    from brainzarr import build_store

    return build_store(tmp_path_factory.mktemp("stores") / "s8.zarr", resolution=8, genes=120, seed=1)
