"""Fixtures shared by the test modules (helpers that build data live in *_fixture(s).py modules)."""

import logging
import os

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


@pytest.fixture(autouse=True)
def _no_leaks():
    """Every test leaves the environment, brainzarr's options and its logger as it found them
    (a dask cluster, for one, sets OMP/MKL/OPENBLAS_NUM_THREADS for its workers)."""
    from brainzarr.options import OPTIONS

    env, options = dict(os.environ), dict(OPTIONS)
    logger = logging.getLogger("brainzarr")
    handlers, level = list(logger.handlers), logger.level
    yield
    if dict(os.environ) != env:
        os.environ.clear()
        os.environ.update(env)
    OPTIONS.clear()
    OPTIONS.update(options)
    logger.handlers[:] = handlers
    logger.setLevel(level)
