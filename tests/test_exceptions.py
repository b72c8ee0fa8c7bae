"""One base class for brainzarr's errors; builtins still catch them; the CLI names its flags."""

import pytest

import brainzarr
from brainzarr import exceptions
from brainzarr.cli import error_message


def test_every_error_derives_from_the_base_and_a_builtin():
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        if not isinstance(cls, type) or cls is exceptions.BrainzarrError:
            continue
        assert issubclass(cls, exceptions.BrainzarrError), name
        assert any(base.__module__ == "builtins" and base is not object for base in cls.__mro__[1:]), name


def test_python_spelling_in_the_library_and_flags_in_the_cli():
    exc = exceptions.ResultExistsError("representations/pca/k8 exists", options={"overwrite": True})
    assert str(exc) == "representations/pca/k8 exists; pass overwrite=True"
    assert error_message(exc) == "representations/pca/k8 exists; pass --overwrite"
    exc = exceptions.StoreExistsError("x", options={"overwrite": True, "discard_results": True})
    assert error_message(exc) == "x; pass --overwrite --discard-results"
    with pytest.raises(FileExistsError):  # except FileExistsError keeps working
        raise exc


def test_library_messages_speak_python(small_store):
    with pytest.raises(brainzarr.ResultExistsError) as info:
        brainzarr.fit_store(small_store, "pca", 2)
        brainzarr.fit_store(small_store, "pca", 2)
    assert "overwrite=True" in str(info.value) and "--" not in str(info.value)


def test_no_library_message_names_a_cli_flag():
    import re
    from pathlib import Path

    root = Path(brainzarr.__file__).parent
    for path in root.rglob("*.py"):
        if "commands" in path.parts or path.name == "cli.py":
            continue
        for line in path.read_text().splitlines():
            if re.search(r"(raise|Error\().*['\"][^'\"]*--[a-z]", line):
                pytest.fail(f"{path.name}: {line.strip()}")
