"""Run a list of dask tasks with a progress bar, locally or on a dask.distributed Client."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import dask
from dask.callbacks import Callback
from dask.system import CPU_COUNT
from tqdm.auto import tqdm

__all__ = ["compute_tasks", "progress_enabled"]


def progress_enabled(progress: bool | None = None) -> bool:
    """Progress bars show when asked, or by default when stderr is a terminal or
    ``BRAINZARR_PROGRESS=1``."""
    if progress is not None:
        return progress
    env = os.environ.get("BRAINZARR_PROGRESS")
    if env is not None:
        return env not in ("0", "", "false")
    return sys.stderr.isatty()


class _TqdmCallback(Callback):
    """Advance a bar when a task whose key is one of ``keys`` finishes."""

    def __init__(self, bar, keys):
        super().__init__()
        self._bar = bar
        self._keys = set(keys)

    def _posttask(self, key, result, dsk, state, worker_id):
        if key in self._keys:
            self._bar.update(1)


def compute_tasks(tasks, *, client=None, desc="working", progress=None, num_workers=None, track=None):
    """Compute ``tasks`` (dask delayed objects) and return their results in order.

    Parameters
    ----------
    tasks : list of dask.delayed.Delayed
    client : distributed.Client, optional
        Run on this cluster; otherwise the local threaded scheduler.
    desc : str
        Label of the progress bar.
    progress : bool, optional
        Show a bar (default: when stderr is a terminal).
    num_workers : int, optional
        Threads of the local scheduler (default: the CPU count).
    track : list of Delayed, optional
        Tasks the bar counts (default: ``tasks``), e.g. the leaves of a reduction.
    """
    tasks = list(tasks)
    if not tasks:
        return []
    show = progress_enabled(progress)
    track = tasks if track is None or client is not None else list(track)
    with tqdm(total=len(track), desc=desc, disable=not show, unit="task", leave=show) as bar:
        if client is not None:
            from distributed import as_completed

            futures = client.compute(tasks)
            for _ in as_completed(futures):
                bar.update(1)
            return client.gather(futures)
        # our own pool, so that when a task fails the ones still running finish before the error
        # reaches the caller (dask's shared pool lets them go on writing into a scratch folder
        # the caller is already removing)
        pool = ThreadPoolExecutor(num_workers or CPU_COUNT)
        try:
            with _TqdmCallback(bar, [t.key for t in track]):
                return list(dask.compute(*tasks, scheduler="threads", pool=pool))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
