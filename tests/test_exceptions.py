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
    # a command that does not take a flag is not told to pass it
    assert error_message(exc, flags={"--overwrite", "--discard-results"}) == "x; pass --overwrite --discard-results"
    assert error_message(exc, flags={"--overwrite", "--quiet"}) == "x"


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


# Builtins brainzarr still raises on purpose: Python's protocols, checks of its own bookkeeping
# (a bug), and two that never reach a user: an ImportError caught where it is raised, and a
# disk's short read.
_BUILTINS_KEPT = {"AttributeError", "IndexError", "NotImplementedError", "RuntimeError"}
_SITES_KEPT = {("_zarr.py", "ImportError"), ("nifti.py", "OSError")}


def test_every_error_raised_on_purpose_is_a_brainzarr_error():
    import ast
    import builtins
    from pathlib import Path

    names = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
    found = []
    for path in Path(brainzarr.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.id if isinstance(exc, ast.Name) else None
            if name in names and name not in _BUILTINS_KEPT and (path.name, name) not in _SITES_KEPT:
                found.append(f"{path.name}:{node.lineno} raises {name}")
    assert not found, "raise brainzarr.exceptions classes instead: " + "; ".join(found)


def test_a_users_mistakes_are_caught_as_brainzarr_errors(tmp_path):
    from brainzarr.sources import load_source

    with pytest.raises(exceptions.UnknownGeneError, match="NOPE1"):  # one class, wherever raised
        load_source("synthetic", genes=["NOPE1"])
    with pytest.raises(exceptions.DataNotFoundError) as info:
        brainzarr.from_nifti(tmp_path / "missing.nii.gz", brainzarr.mni152_grid(8))
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(exceptions.InputTypeError) as info:
        brainzarr.to_nifti([1.0, 2.0], brainzarr.mni152_grid(8))  # a list, not a DataArray
    assert isinstance(info.value, TypeError)
    with pytest.raises(exceptions.InputError) as info:
        brainzarr.mni152_grid(2.5)
    assert isinstance(info.value, ValueError)
