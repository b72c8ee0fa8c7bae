"""One progress bar per job.

A *job* (a build, a fit, an export, a training run) opens one bar with :func:`job`; the passes
inside it (:func:`step`) add their work to that bar instead of drawing their own, so a log
never fills with a bar per pass. Outside any job a pass opens a job of its own. Bars are drawn
only when :func:`brainzarr.options.show_progress` says so (a terminal, or asked); drawn into a
file they update at most every 30 s, each state on a line of its own.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from tqdm.auto import tqdm

from .options import show_progress

__all__ = ["job", "step"]

_LOCK = threading.Lock()
_ACTIVE: list = []


class _Lines:
    """stderr for a bar drawn into a log: each state on a line of its own (a terminal redraws one
    line with a carriage return, which in a file runs into the log's next message)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self._stream.write(text + "\n")

    def flush(self) -> None:
        self._stream.flush()


class _Bar:
    """A tqdm bar whose total grows as the passes of a job announce their work."""

    def __init__(self, desc: str, unit: str, show: bool):
        tty = self._tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self._bar = tqdm(
            total=0,
            desc=desc,
            unit=unit,
            disable=not show,
            leave=show,
            mininterval=0.1 if tty else 30.0,
            dynamic_ncols=tty,
            file=sys.stderr if tty else _Lines(sys.stderr),
            ascii=not tty,  # '#' in a log, not block characters
        )

    def add_total(self, n: int) -> None:
        with _LOCK:
            self._bar.total = (self._bar.total or 0) + int(n)
            if self._tty:  # in a file, the next timed update shows it
                self._bar.refresh()

    def update(self, n: int = 1) -> None:
        with _LOCK:
            self._bar.update(n)

    def note(self, **postfix) -> None:
        self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self._bar.close()


@contextlib.contextmanager
def job(desc: str, *, unit: str = "step", progress: bool | None = None):
    """The bar of a job (the enclosing job's bar when one is open)."""
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    bar = _Bar(desc, unit, show_progress(progress))
    _ACTIVE.append(bar)
    try:
        yield bar
    finally:
        _ACTIVE.remove(bar)
        bar.close()


@contextlib.contextmanager
def step(total: int, desc: str, *, unit: str = "step", progress: bool | None = None):
    """A pass of ``total`` units: counted on the open job's bar, or on a bar of its own."""
    with job(desc, unit=unit, progress=progress) as bar:
        bar.add_total(total)
        bar.note(now=desc)
        yield bar
