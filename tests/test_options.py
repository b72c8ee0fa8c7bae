"""Options (as xarray's set_options), logging and progress bars: one bar per job, none in a log."""

import io
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import brainzarr
from brainzarr import _progress
from brainzarr.options import current_client, get_options, set_options, show_progress


def test_set_options_in_a_block_and_for_the_session():
    before = get_options()
    with set_options(progress=True):
        assert get_options()["progress"] is True and show_progress() is True
        with set_options(progress=False):
            assert show_progress() is False
        assert get_options()["progress"] is True
    assert get_options() == before
    token = set_options(progress=False)  # without `with`: for the session, until reset
    try:
        assert get_options()["progress"] is False
    finally:
        token.__exit__(None, None, None)
    assert get_options() == before


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown option"):
        set_options(colour=True)
    with pytest.raises(ValueError, match="progress must be"):
        set_options(progress="yes")
    with pytest.raises(TypeError, match="client must be"):
        set_options(client=object())


def test_the_environment_only_seeds_the_default():
    code = "import brainzarr; print(brainzarr.get_options()['progress'])"
    env = {**os.environ, "BRAINZARR_PROGRESS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    env["BRAINZARR_PROGRESS"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_client_means_local_threads():
    assert current_client() is None


def _draw(monkeypatch, *, tty: bool, progress):
    """Run a job of three passes with stderr replaced; return what was written."""
    stream = io.StringIO()
    stream.isatty = lambda: tty
    monkeypatch.setattr(sys, "stderr", stream)
    with set_options(progress=progress), _progress.job("fit", unit="block"):
        for p in range(3):
            with _progress.step(4, f"pass {p}") as bar:
                for _ in range(4):
                    bar.update(1)
    return stream.getvalue()


def test_one_bar_per_job_on_a_terminal(monkeypatch):
    text = _draw(monkeypatch, tty=True, progress=None)
    assert "fit" in text and "12/12" in text
    assert "pass 0:" not in text  # passes count on the job's bar, never a bar of their own


def test_no_bar_in_a_log_unless_asked(monkeypatch):
    assert _draw(monkeypatch, tty=False, progress=None) == ""
    asked = _draw(monkeypatch, tty=False, progress=True)
    # asked for in a log: one bar, redrawn at most every 30 s (here: its first and last state),
    # each state a line of its own (a carriage return would run into the log's next message)
    lines = asked.splitlines()
    assert "\r" not in asked and asked.endswith("\n") and 0 < len(lines) <= 3
    assert "12/12" in lines[-1] and "#" in lines[-1]


def test_messages_go_to_the_brainzarr_logger(tmp_path, caplog):
    from brainzarr.cli import main

    brainzarr_log = logging.getLogger("brainzarr")
    # during a command they do not propagate to the root logger, where caplog listens
    brainzarr_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="brainzarr"):
            assert main(["build", "--genes", "5", "--out", str(tmp_path / "s.zarr")]) == 0
    finally:
        brainzarr_log.removeHandler(caplog.handler)
    assert any(r.name.startswith("brainzarr") and "built" in r.getMessage() for r in caplog.records)
    assert logging.getLogger("brainzarr").handlers[-1].__class__ is logging.NullHandler  # the CLI's is gone


def test_quiet_keeps_errors_only(tmp_path, capsys):
    from brainzarr.cli import main

    assert main(["build", "--genes", "5", "--quiet", "--out", str(tmp_path / "s.zarr")]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "5 genes" in captured.out  # the store's description is the result


def test_library_is_silent_without_configuration(tmp_path, capsys):
    brainzarr.build_store(tmp_path / "s.zarr", genes=4)
    assert capsys.readouterr().err == ""
    assert np.isfinite(brainzarr.open_store(tmp_path / "s.zarr")["expression"].values).all()
