"""compute_tasks: the local threaded path."""

import threading
import time

import dask
import pytest

from brainzarr.streaming import compute_tasks


def test_results_come_back_in_task_order():
    tasks = [dask.delayed(lambda i: (time.sleep(0.01 * (5 - i)), i)[1])(i) for i in range(5)]
    assert compute_tasks(tasks, num_workers=3) == [0, 1, 2, 3, 4]


def test_a_failure_is_raised_only_after_the_running_tasks_finished():
    finished = threading.Event()

    def slow():
        time.sleep(0.5)
        finished.set()  # e.g. a chunk written into a scratch folder the caller removes on error
        return 1

    def failing():
        time.sleep(0.05)
        raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        compute_tasks([dask.delayed(slow)(), dask.delayed(failing)()], num_workers=2)
    assert finished.is_set()
