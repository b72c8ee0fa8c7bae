"""A synthetic 8 mm store with a few hundred genes and small chunks, so that every pass over it
streams several row blocks (the default chunk holds the whole 8 mm brain in one block)."""

import pytest

CHUNKS = (512, 64)
N_GENES = 300


@pytest.fixture(scope="session")
def chunked_store(tmp_path_factory):
    from brainzarr import build_store

    return build_store(
        tmp_path_factory.mktemp("linear") / "c8.zarr",
        resolution=8,
        genes=N_GENES,
        seed=1,
        chunks=CHUNKS,
        progress=False,
    )
