"""Fixtures shared by the test modules (helpers that build data live in *_fixture(s).py modules)."""

import pytest

#: chunks of ``chunked_store``: several row blocks per pass (the default chunk holds all 8 mm voxels)
CHUNKS = (512, 64)
N_GENES = 300


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """An 8 mm synthetic store with 120 genes (built once per session)."""
    from brainzarr import build_store

    return build_store(tmp_path_factory.mktemp("stores") / "s8.zarr", resolution=8, genes=120, random_state=1)


@pytest.fixture(scope="session")
def chunked_store(tmp_path_factory):
    """A synthetic 8 mm store with 300 genes and small chunks, so that every pass over it streams
    several row blocks."""
    from brainzarr import build_store

    return build_store(
        tmp_path_factory.mktemp("linear") / "c8.zarr", resolution=8, genes=N_GENES, random_state=1, chunks=CHUNKS
    )
